"""Candidate and champion: does a newly trained model replace the one in service?

Every pipeline run registers its final model under the ``candidate`` alias, tagged with where its
held-out evaluation's per-problem results are (``diffucoder.eval_per_problem``) and its data
fingerprint (``diffucoder.data_hash``). :func:`promote` compares the candidate with the model holding
``champion`` **on the same problems**: for each held-out problem the difference of the two pass@1
values, their mean and its standard error (the paired design removes the problems' own difficulty
from the noise, so small gains are visible that two independent means would hide). The candidate
becomes champion when ``mean - z * SE > margin`` on at least ``min_problems`` problems. The first
model becomes champion without a comparison. Models evaluated on different problems are not
comparable and the comparison is refused.

Every decision is recorded: tags ``promotion/*`` on the candidate's version and on its pipeline
run (``runs compare`` shows them), and the registered model's ``diffucoder.champion_history``
(version numbers in the order they became champion), which :func:`rollback` walks back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from diffucoder import storage, tracking
from diffucoder.config import RunConfig

PER_PROBLEM_TAG = "diffucoder.eval_per_problem"
DATA_HASH_TAG = "diffucoder.data_hash"
HISTORY_TAG = "diffucoder.champion_history"


class PromotionError(ValueError):
    """The registry or the evaluations do not allow the requested move; the message says why."""


@dataclass(frozen=True)
class PairedComparison:
    n: int
    candidate: float  # mean pass@1
    champion: float
    diff: float  # mean of the per-problem differences (candidate - champion)
    se: float  # its standard error

    def lower_bound(self, z: float) -> float:
        return self.diff - z * self.se


@dataclass(frozen=True)
class Decision:
    outcome: str  # first | promoted | kept | already-champion
    candidate_version: str
    champion_version: str | None
    comparison: PairedComparison | None
    reason: str

    def tags(self) -> dict[str, str]:
        tags = {
            "promotion/decision": self.outcome,
            "promotion/reason": self.reason,
            "promotion/candidate_version": self.candidate_version,
            "promotion/champion_version": self.champion_version or "",
        }
        if self.comparison:
            c = self.comparison
            tags.update(
                {
                    "promotion/candidate_pass_at_1": f"{c.candidate:.4f}",
                    "promotion/champion_pass_at_1": f"{c.champion:.4f}",
                    "promotion/diff": f"{c.diff:+.4f}",
                    "promotion/se": f"{c.se:.4f}",
                    "promotion/n": str(c.n),
                }
            )
        return tags


def per_problem_scores(uri: str, benchmark: str, speed: str, temperature: float | None) -> dict[str, float]:
    """task_id -> pass@1 of one benchmark row of an evaluation's ``per_problem.jsonl``."""
    rows = [json.loads(line) for line in storage.read_text(uri).splitlines() if line.strip()]
    rows = [r for r in rows if r["benchmark"] == benchmark and r["speed"] == speed]
    if not rows:
        raise PromotionError(f"{uri} has no {benchmark!r} results at speed {speed}; evaluate that benchmark")
    temps = sorted({r["temperature"] for r in rows})
    temp = temps[0] if temperature is None else temperature
    if temp not in temps:
        raise PromotionError(f"{uri}: {benchmark} was evaluated at temperatures {temps}, not {temperature}")
    return {r["task_id"]: float(r["pass_at_1"]) for r in rows if r["temperature"] == temp}


def paired(candidate: dict[str, float], champion: dict[str, float], min_problems: int) -> PairedComparison:
    """Mean and standard error of the per-problem difference; refuses different problem sets."""
    only_c, only_ch = set(candidate) - set(champion), set(champion) - set(candidate)
    if only_c or only_ch:
        raise PromotionError(
            f"not comparable: the candidate was evaluated on {len(only_c)} problems the champion was not "
            f"(e.g. {sorted(only_c)[:3]}) and the champion on {len(only_ch)} the candidate was not "
            f"(e.g. {sorted(only_ch)[:3]}); evaluate both on the same held-out problems"
        )
    n = len(candidate)
    if n < min_problems:
        raise PromotionError(f"only {n} shared problems; promotion.min_problems is {min_problems}")
    diffs = [candidate[k] - champion[k] for k in sorted(candidate)]
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    return PairedComparison(
        n=n,
        candidate=sum(candidate.values()) / n,
        champion=sum(champion.values()) / n,
        diff=mean,
        se=math.sqrt(var / n),
    )


def _scores(cfg: RunConfig, version: tracking.ModelVersion) -> dict[str, float]:
    uri = version.tags.get(PER_PROBLEM_TAG)
    if not uri:
        raise PromotionError(
            f"model {version.name} version {version.version} has no {PER_PROBLEM_TAG} tag (no held-out "
            "per-problem results); register it through the pipeline or tag it with its per_problem.jsonl"
        )
    p = cfg.promotion
    return per_problem_scores(uri, p.benchmark, p.speed, p.temperature)


def history(cfg: RunConfig) -> list[str]:
    name = cfg.tracking.registered_model_name
    raw = tracking.registered_model_tags(name, cfg=cfg.tracking).get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def _make_champion(cfg: RunConfig, version: str) -> None:
    name = cfg.tracking.registered_model_name
    tracking.set_model_alias(name, cfg.promotion.champion_alias, version, cfg=cfg.tracking)
    tracking.set_registered_model_tag(name, HISTORY_TAG, ",".join([*history(cfg), version]), cfg=cfg.tracking)


def decide(
    cfg: RunConfig, candidate: tracking.ModelVersion, champion: tracking.ModelVersion | None
) -> Decision:
    """The decision for ``candidate`` against ``champion`` (no registry writes)."""
    if champion is None:
        return Decision(
            "first", candidate.version, None, None, "no champion yet: the first model becomes champion"
        )
    if champion.version == candidate.version:
        return Decision(
            "already-champion", candidate.version, champion.version, None, "the candidate is the champion"
        )
    p = cfg.promotion
    cmp = paired(_scores(cfg, candidate), _scores(cfg, champion), p.min_problems)
    bound = cmp.lower_bound(p.z)
    better = bound > p.margin
    reason = (
        f"{p.benchmark} pass@1 {cmp.candidate:.4f} vs {cmp.champion:.4f} on {cmp.n} problems: "
        f"paired difference {cmp.diff:+.4f} +- {cmp.se:.4f} (SE); {cmp.diff:+.4f} - {p.z:g} x SE = {bound:+.4f} "
        f"{'>' if better else '<='} margin {p.margin:g}"
    )
    return Decision("promoted" if better else "kept", candidate.version, champion.version, cmp, reason)


def promote(cfg: RunConfig, *, version: str | None = None, run_id: str | None = None) -> Decision:
    """Compare the candidate (or ``version``) with the champion and move ``champion`` if it wins.

    Tags the decision on the candidate's model version and on ``run_id`` (its pipeline run) when given.
    """
    name, t = cfg.tracking.registered_model_name, cfg.tracking
    alias = cfg.tracking.registered_model_alias
    candidate = (
        tracking.model_version(name, version=version, cfg=t)
        if version
        else tracking.model_version(name, alias=alias, cfg=t)
    )
    if candidate is None:
        what = f"version {version}" if version else f"alias {alias!r}"
        raise PromotionError(
            f"model {name!r} has no {what} in the registry at {tracking.resolve_tracking_uri(t)}"
        )
    champion = tracking.model_version(name, alias=cfg.promotion.champion_alias, cfg=t)
    decision = decide(cfg, candidate, champion)
    if decision.outcome in ("first", "promoted"):
        _make_champion(cfg, candidate.version)
    tracking.set_model_version_tags(name, candidate.version, decision.tags(), cfg=t)
    if run_id:
        tracking.set_run_tags(run_id, decision.tags(), cfg=t)
    return decision


def rollback(cfg: RunConfig, *, to_version: str | None = None) -> tuple[str, str]:
    """Point ``champion`` back at the previous champion (or ``to_version``); returns (from, to)."""
    name, t = cfg.tracking.registered_model_name, cfg.tracking
    champion = tracking.model_version(name, alias=cfg.promotion.champion_alias, cfg=t)
    if champion is None:
        raise PromotionError(
            f"model {name!r} has no {cfg.promotion.champion_alias!r} yet: nothing to roll back"
        )
    past = history(cfg)
    if to_version is None:
        earlier = [v for v in past if v != champion.version]
        if not earlier:
            raise PromotionError(f"version {champion.version} is the only champion {name!r} has had")
        to_version = earlier[-1]
        past = past[: len(past) - 1 - past[::-1].index(to_version)] if to_version in past else past
    elif tracking.model_version(name, version=to_version, cfg=t) is None:
        raise PromotionError(f"model {name!r} has no version {to_version}")
    tracking.set_model_alias(name, cfg.promotion.champion_alias, to_version, cfg=t)
    tracking.set_registered_model_tag(name, HISTORY_TAG, ",".join([*past, to_version]), cfg=t)
    tracking.set_model_version_tags(name, champion.version, {"promotion/rolled_back_to": to_version}, cfg=t)
    return champion.version, to_version
