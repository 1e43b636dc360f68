"""The data plan: what a run's data steps build, checked before any compute, and where they write."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from diffucoder import storage
from diffucoder.config import RunConfig
from diffucoder.train.config import PACKED_STAGES, STAGES

PLAN_FILE = "plan.json"

SOURCE_HINTS = {
    "pretrain": "raw code URIs, or [generated:tiny]",
    "midtrain": "sealed filtered-text shards from `diffucoder data prepare`, or generated:tiny",
    "instruct": "an SFT JSONL/Parquet URI (chat or OpenCoder rows), or generated:tiny",
    "grpo": "an RL JSONL/Parquet URI (AceCode-style rows), or generated:tiny",
}


@dataclass(frozen=True)
class DataPlan:
    """What one run's data steps produce, from the stages it trains and ``data.sources``.

    Attributes:
        stages: the training stages the run trains, in order.
        corpus: build the stage-1 corpus (stage 1 trains on it, or stage 2 mixes tiny tasks into it).
        tiny_tasks: generate the tiny tasks (a stage's source is generated:tiny, or an evaluation of
            the run scores tiny_heldout).
        tokenizer_from: the tokenizer packing uses: a model URI (the base model, or the start model of
            a run that starts at stage 2), or "" = a BPE trained on the corpus. Unused when no stage packs.
    """

    stages: tuple[str, ...]
    corpus: bool
    tiny_tasks: bool
    tokenizer_from: str

    @property
    def packs(self) -> bool:
        return any(s in self.stages for s in PACKED_STAGES)


def no_source(stage: str) -> str:
    """The error message for a trained stage without a data source: the setting and what it takes."""
    return f"stage {stage} has no data source: set data.sources.{stage} ({SOURCE_HINTS[stage]})"


def _benchmarks(names: str, cfg: RunConfig) -> list[str]:
    return [b.strip() for b in names.split(",") if b.strip()] or list(cfg.evaluation.benchmarks)


def plan_run(cfg: RunConfig, arguments: dict[str, Any]) -> DataPlan:
    """The run's data plan from its config and pipeline arguments, refusing what cannot run.

    Raises:
        ValueError: a stage the run trains has no data source (naming the stage and the setting),
            a later start without ``start_model_uri``, or an unknown ``start_from``.
    """
    start = arguments.get("start_from", "pretrain")
    if start not in STAGES:
        raise ValueError(f"start_from={start!r}: expected one of {', '.join(STAGES)}")
    start_model = arguments.get("start_model_uri", "")
    if start != "pretrain" and not start_model:
        raise ValueError(f"start_from={start} needs start_model_uri (the model that stage starts from)")
    stages = STAGES[STAGES.index(start) :]
    run_grpo = arguments.get("run_grpo", True)
    if isinstance(run_grpo, str):  # kfp.local hands parameters inside a dict over as strings
        run_grpo = run_grpo.lower() == "true"
    if not run_grpo and start != "grpo":
        stages = stages[:-1]
    sources = cfg.data.sources
    missing = [no_source(stage) for stage in stages if not sources.of(stage)]
    if missing:
        raise ValueError("; ".join(missing))
    evaluated = _benchmarks(arguments.get("final_eval_benchmarks", ""), cfg)
    if "instruct" in stages:
        evaluated += _benchmarks(arguments.get("checkpoint_eval_benchmarks", ""), cfg)
    generated = [s for s in stages if sources.generated(s)]
    tokenizer_from = ""  # later starts pack nothing
    if start == "midtrain":
        tokenizer_from = start_model
    elif start == "pretrain":
        tokenizer_from = cfg.model.base_model_uri or ""
    return DataPlan(
        stages=stages,
        corpus="pretrain" in stages or "midtrain" in generated,
        tiny_tasks=bool(set(generated) - {"pretrain"}) or "tiny_heldout" in evaluated,
        tokenizer_from=tokenizer_from,
    )


def check_inputs(cfg: RunConfig, arguments: dict[str, Any], plan: DataPlan) -> None:
    """Everything the run reads exists, before any compute: each source URI of a stage it trains,
    and the models it starts from, which must be sealed project artifacts of the right kind (their
    config.json is read, nothing is downloaded), so a released checkpoint never imported fails here.

    Raises:
        FileNotFoundError / storage.IncompleteArtifactError / ValueError: naming the setting.
    """
    from diffucoder.model.kinds import check_sealed_model

    sources = cfg.data.sources
    for stage in plan.stages:
        if sources.generated(stage):
            continue
        source = sources.of(stage)
        for uri in source if isinstance(source, list) else [source]:
            if not storage.exists(uri):
                raise FileNotFoundError(f"data.sources.{stage}: {uri} does not exist")
    midtrain_text = "midtrain" in plan.stages and not sources.generated("midtrain")
    if midtrain_text and not storage.is_complete(sources.midtrain):
        raise storage.IncompleteArtifactError(
            f"data.sources.midtrain={sources.midtrain}: not a sealed directory of filtered text shards "
            "(write it with `diffucoder data prepare --out`)"
        )
    if cfg.model.base_model_uri and plan.stages[0] == "pretrain":
        check_sealed_model(cfg.model.base_model_uri, "model.base_model_uri", base=True)
    if arguments.get("start_model_uri"):
        check_sealed_model(arguments["start_model_uri"], "start_model_uri", base=False)


def write_plan(root: str, plan: DataPlan) -> None:
    storage.write_text(storage.join(root, PLAN_FILE), json.dumps(asdict(plan), indent=1))


def read_plan(root: str) -> DataPlan:
    """The plan open-run stored for this data root (the root's name is keyed by it)."""
    data = json.loads(storage.read_text(storage.join(root, PLAN_FILE)))
    return DataPlan(**{**data, "stages": tuple(data["stages"])})


def data_root(cfg: RunConfig, plan: DataPlan, stdlib_max_files: int, vocab_size: int) -> str:
    """Where the data steps write: keyed by everything that shapes the data, not by the run, so a
    rerun with the same data settings finds (and KFP's cache can reuse) the same artifacts. The plan
    is part of the key: a run that builds no corpus must not leave an empty one for a run that does."""
    key = {
        "data": cfg.data.model_dump(mode="json"),
        "seed": cfg.seed,
        "plan": asdict(plan),
        "stdlib_max_files": stdlib_max_files,
        "vocab_size": vocab_size,
        "base_model": cfg.model.base_model_uri,
        "seq_len": {s: getattr(cfg, s).seq_len for s in PACKED_STAGES},
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return storage.join(cfg.output_root, "data", digest)


def unused(cfg: RunConfig, root: str, step: str, reason: str) -> str:
    """A sealed marker artifact for a step this run does not need; returns its URI."""
    from diffucoder.data import io

    out = storage.join(root, "unused", step)
    with io.output_dir(out) as path:
        io.write_json(str(path / "unused.json"), {"step": step, "reason": reason})
    return out


def is_unused(uri: str) -> bool:
    return storage.exists(storage.join(uri, "unused.json"))
