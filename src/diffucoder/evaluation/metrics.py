"""Per-problem results and their aggregation into the stage's flat metric dict.

Names are MLflow-legal and stable across runs (paper §5 columns):
- ``{bench}_pass_at_{k}_{speed}_temp{T}``: one cell of the sampling grid;
- ``{bench}_pass_at_{k}_{speed}``: the best temperature's value (paper Table 2 reports the best of
  {0.2, 0.3, 0.4}); ``{bench}_best_temp_{speed}`` records which one;
- ``evalplus_pass_at_{k}_{speed}``: mean of HumanEval+ and MBPP+ (paper's "EvalPlus" column);
- ``{bench}_rel_drop_2x``: (pass@1 at 1x - at 2x) / pass@1 at 1x, the "2x speed" cost (paper §5.4);
  left out when the 1x score is 0 (the ratio is undefined);
- ``{bench}_rel_drop_2x_temp{T}`` and ``{bench}_rel_drop_2x_se_temp{T}``: the same at one temperature,
  paired problem by problem, with its paired SE (diffucoder.evaluation.paired.speed_costs; paper
  finding (d) compares it before and after coupled-GRPO);
- ``arness_local_at_{k}_{speed}`` / ``arness_global_at_{k}_{speed}``: mean AR-ness over samples;
- ``tokens_per_s_{speed}``: generated tokens per second of decoding.
Samples scored from a file (``diffucoder evaluate --samples``) have no speed or temperature: their
cells are ``{bench}_pass_at_{k}_samples`` and ``evalplus_pass_at_{k}_samples``.
Scores are fractions in [0, 1].
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from statistics import mean

from diffucoder.evaluation.paired import Key, speed_costs
from diffucoder.evaluation.passk import mean_pass_at_k, pass_at_k


@dataclass
class SampleResult:
    """One completion of one problem at one grid point, after execution."""

    completion: str
    program: str
    passed: bool
    verdict: str  # first non-passing verdict, "passed", or "infra_error"
    n_passed: int
    n_tests: int
    infra_error: str | None = None
    tiers: dict[str, str] = field(default_factory=dict)  # EvalPlus status per tier (base, plus)
    gen_tokens: int = 0
    arness_local: dict[int, float] = field(default_factory=dict)
    arness_global: dict[int, float] = field(default_factory=dict)
    trace: list[int] | None = None
    failing_test: str | None = None  # the first failing assert, or call on the first failing input
    error: str | None = None  # the program's error text on that test (exception or stderr)


@dataclass
class ProblemResult:
    """All samples of one problem at one (speed, temperature) grid point."""

    benchmark: str
    task_id: str
    speed: str  # "1x", "2x", or SAMPLES
    temperature: float | None  # None for SAMPLES
    samples: list[SampleResult]
    prompt: str = ""  # what the model was asked (the benchmark's prompt)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def n_correct(self) -> int:
        return sum(s.passed for s in self.samples)

    def to_row(self, ks: list[int]) -> dict:
        """A JSON-ready row for per_problem.jsonl (traces dropped: they live in the report)."""
        row = {
            "benchmark": self.benchmark,
            "task_id": self.task_id,
            "speed": self.speed,
            "temperature": self.temperature,
            "n": self.n,
            "n_correct": self.n_correct,
            "prompt": self.prompt,
        }
        row.update({f"pass_at_{k}": pass_at_k(self.n, self.n_correct, k) for k in ks})
        row["samples"] = [{k: v for k, v in asdict(s).items() if k != "trace"} for s in self.samples]
        return row


SAMPLES = "samples"


def temp_label(temperature: float) -> str:
    return f"temp{temperature:g}"


def pass_rates_of(results: list[ProblemResult]) -> dict[Key, float]:
    """Each result's pass rate, keyed as :func:`diffucoder.evaluation.paired.pass_rates` keys a
    ``per_problem.jsonl`` (grid points only: scored samples files have no speed to pair)."""
    return {
        (r.benchmark, r.task_id, r.speed, r.temperature): r.n_correct / r.n
        for r in results
        if r.temperature is not None and r.n
    }


def aggregate(
    results: list[ProblemResult], ks: list[int], gen_seconds: dict[str, float] | None = None
) -> dict[str, float]:
    """The flat metric dict of a run (see the module docstring for the names)."""
    cells: dict[tuple[str, str, float], list[ProblemResult]] = defaultdict(list)
    for r in results:
        cells[(r.benchmark, r.speed, r.temperature)].append(r)

    metrics: dict[str, float] = {}
    best: dict[tuple[str, str, int], float] = {}
    for (bench, speed, temp), rows in sorted(cells.items(), key=lambda c: (c[0][0], c[0][1], c[0][2] or 0.0)):
        counts = [(r.n, r.n_correct) for r in rows]
        for k in ks:
            score = mean_pass_at_k(counts, k)
            if speed == SAMPLES:
                best[(bench, speed, k)] = score
                continue
            metrics[f"{bench}_pass_at_{k}_{speed}_{temp_label(temp)}"] = score
            if score > best.get((bench, speed, k), -1.0):
                best[(bench, speed, k)] = score
                if k == ks[0]:
                    metrics[f"{bench}_best_temp_{speed}"] = temp
    for (bench, speed, k), score in best.items():
        metrics[f"{bench}_pass_at_{k}_{speed}"] = score

    speeds = sorted({speed for _, speed, _ in best})
    benches = sorted({bench for bench, _, _ in best})
    for speed in speeds:
        for k in ks:
            he, mb = best.get(("humaneval_plus", speed, k)), best.get(("mbpp_plus", speed, k))
            if he is not None and mb is not None:
                metrics[f"evalplus_pass_at_{k}_{speed}"] = (he + mb) / 2
    for bench in benches:
        one, two = best.get((bench, "1x", ks[0])), best.get((bench, "2x", ks[0]))
        if one and two is not None:
            metrics[f"{bench}_rel_drop_2x"] = (one - two) / one
    for (bench, temp), cost in speed_costs(pass_rates_of(results)).items():
        if cost.relative is not None:
            metrics[f"{bench}_rel_drop_2x_{temp_label(temp)}"] = cost.relative
            metrics[f"{bench}_rel_drop_2x_se_{temp_label(temp)}"] = cost.relative_se

    for speed in speeds:
        samples = [s for r in results if r.speed == speed for s in r.samples]
        for kind in ("local", "global"):
            per_k: dict[int, list[float]] = defaultdict(list)
            for s in samples:
                for k, v in getattr(s, f"arness_{kind}").items():
                    per_k[k].append(v)
            for k, values in sorted(per_k.items()):
                metrics[f"arness_{kind}_at_{k}_{speed}"] = mean(values)
        tokens = sum(s.gen_tokens for s in samples)
        seconds = (gen_seconds or {}).get(speed, 0.0)
        if seconds > 0:
            metrics[f"tokens_per_s_{speed}"] = tokens / seconds
    return metrics


_ARNESS = re.compile(r"^arness_(local|global)_at_(\d+)_(\w+)$")


@dataclass
class TrackedMetrics:
    """An evaluation's metrics as its MLflow run holds them (:func:`tracked_metrics`)."""

    scalars: dict[str, float]
    curves: dict[str, dict[int, float]]  # name -> {k: value}, logged with step = k


def tracked_metrics(metrics: dict[str, float], benchmarks: list[str]) -> TrackedMetrics:
    """The flat metric dict regrouped for MLflow's chart view, one section per group.

    ``{bench}_pass_at_1_1x`` -> ``eval/{bench}/pass_at_1_1x`` (the parent run's headline metrics
    use the same ``eval/{bench}/`` group), ``tokens_per_s_1x`` -> ``throughput/tokens_per_s_1x``, and
    AR-ness, one scalar per k here, becomes one curve per kind and speed (``arness/local_1x``, step = k).
    The flat names stay those of ``metrics.json`` and KFP's metrics.
    """
    scalars: dict[str, float] = {}
    curves: dict[str, dict[int, float]] = defaultdict(dict)
    # longest first: "humaneval_plus_pass_at_1_1x" belongs to humaneval_plus, not humaneval
    groups = sorted({*benchmarks, "evalplus"}, key=len, reverse=True)
    for name, value in metrics.items():
        if arness := _ARNESS.match(name):
            kind, k, speed = arness.groups()
            curves[f"arness/{kind}_{speed}"][int(k)] = value
        elif name.startswith("tokens_per_s_"):
            scalars[f"throughput/{name}"] = value
        else:
            bench = next((b for b in groups if name.startswith(f"{b}_")), None)
            scalars[f"eval/{bench}/{name.removeprefix(f'{bench}_')}" if bench else f"eval/{name}"] = value
    return TrackedMetrics(scalars, dict(curves))
