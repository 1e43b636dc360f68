"""The bodies of the KFP pipeline's steps, as plain functions (the library never imports kfp).

Each component in ``components/`` parses its inputs and calls exactly one function here, so the step
logic is importable and unit-testable without KFP, and the components stay thin. Large data never
travels through KFP: every step writes its output under the run root (a local dir or ``s3://``
prefix) with :mod:`diffucoder.storage`, and hands the next step a small KFP artifact whose metadata
(:func:`artifact_metadata`) carries the URI, sizes, checksums and the resolved config.

Run layout under ``<output_root>/<run name>/``::

    pipeline.json        parent MLflow run id, tracking URI, pipeline arguments, resolved config
    config.yaml          the resolved RunConfig every step reads
    steps/<step>.json    one record per finished step: seconds, key metrics, artifact URIs
    pretrain/ midtrain/ instruct/ grpo/ eval-<label>/   the stages' artifacts

Data artifacts live under ``<output_root>/data/<data fingerprint>/`` (:func:`data_root`): raw/,
work/, corpus/, tasks/, tokenizer/, midtrain-mix/, <stage>-packed/, steps/, plan.json. What the data
steps build follows the run's :class:`DataPlan` (the stages it trains and the sources
``data.sources`` names); a step the run does not need writes a small sealed ``unused/<step>/``
marker instead, so the DAG keeps one shape for every run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from diffucoder import storage
from diffucoder.config import RunConfig, load_config, validate_config
from diffucoder.ops.cost import FINAL_EVAL_TAG, log_run_totals, log_stage_cost
from diffucoder.preload import preload
from diffucoder.train.config import PACKED_STAGES, STAGES

PIPELINE_RECORD = "pipeline.json"
STEP_DIR = "steps"
SANDBOX_MODES = ("local", "shared", "per-run")
LAUNCHERS = ("in-process", "trainjob")
FINAL_EVALS = ("grpo", "final")  # evaluation labels of the model a run registers

# What the heavy steps import (the library imports these lazily, deep inside); each such step loads
# them first with diffucoder.preload, so the garbage collector walks them neither while they import
# nor when the task's process exits.
TRACKING_MODULES = ("mlflow",)
TRAIN_MODULES = ("diffucoder.train.run", "deepspeed", "mlflow", "matplotlib.pyplot")
EVAL_MODULES = ("diffucoder.evaluation.run", "diffucoder.model", "mlflow")
TOKENIZER_MODULES = ("diffucoder.data.tokenizer",)

# --------------------------------------------------------------------------------------------
# Config and run identity
# --------------------------------------------------------------------------------------------


def resolve_config(
    preset: str,
    overrides: list[str],
    config_yaml: str = "",
    output_root: str = "",
    seed: int = -1,
    tracking_uri: str = "",
    experiment: str = "",
    base_model_uri: str = "",
    benchmark_root: str = "",
) -> RunConfig:
    """The run's config: ``config_yaml`` verbatim when given (reruns), else preset + overrides.

    The explicit pipeline parameters (output root, seed, tracking, base model, benchmark data) win
    over both; empty / -1 = keep the config's value.
    """
    cfg = config_from_yaml(config_yaml) if config_yaml.strip() else load_config(preset, list(overrides))
    if output_root:
        cfg.output_root = output_root
    if seed >= 0:
        cfg.seed = seed
    if tracking_uri:
        cfg.tracking.tracking_uri = tracking_uri
    if experiment:
        cfg.tracking.experiment = experiment
    if base_model_uri:
        cfg.model.base_model_uri = base_model_uri
    if benchmark_root:
        cfg.evaluation.data_root = benchmark_root
    return cfg


def config_from_yaml(text: str | dict) -> RunConfig:
    """Rebuild the RunConfig a previous step resolved (validated again, so a bad edit fails here).

    Accepts the mapping too: kfp.local hands a string parameter that passed through a ParallelFor
    to the task already parsed (YAML is a JSON superset to its loader).
    """
    data = yaml.safe_load(text) if isinstance(text, str) else text
    if not isinstance(data, dict):
        raise ValueError(f"config_yaml must be a YAML mapping, got {type(data).__name__}")
    return validate_config(data, source="pipeline config_yaml")


def run_name(job_name: str) -> str:
    """A path-safe name for one pipeline run (KFP job names carry the timestamp locally)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-.")
    if not slug:
        raise ValueError(f"pipeline job name {job_name!r} has no usable characters for a run directory")
    return slug


def run_root(cfg: RunConfig, job_name: str) -> str:
    return storage.join(cfg.output_root, run_name(job_name))


# --------------------------------------------------------------------------------------------
# The data plan: what a run's data steps build, checked before any compute
# --------------------------------------------------------------------------------------------

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


def _no_source(stage: str) -> str:
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
    missing = [_no_source(stage) for stage in stages if not sources.of(stage)]
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


def export_run_env(parent_run_id: str = "", kfp_run_id: str = "", pipeline_name: str = "") -> None:
    """The variables tracking.py reads to link a stage's MLflow run to the pipeline run."""
    from diffucoder import tracking

    for var, value in (
        (tracking.PARENT_ENV, parent_run_id),
        (tracking.KFP_RUN_ID_ENV, kfp_run_id),
        (tracking.KFP_PIPELINE_ENV, pipeline_name),
    ):
        if value:
            os.environ[var] = value


# --------------------------------------------------------------------------------------------
# Artifact metadata and step records
# --------------------------------------------------------------------------------------------


def artifact_metadata(uri: str, cfg: RunConfig, **extra: Any) -> dict[str, Any]:
    """What a KFP artifact carries for a directory artifact: URI, file count, bytes, checksums, config.

    ``manifest_sha256`` hashes the sealed MANIFEST.json, which lists every file's sha256, so two
    artifacts with equal ``manifest_sha256`` hold byte-identical files; ``content_sha256`` hashes
    the file list alone, so an artifact rebuilt with the same bytes keeps it. Refuses an incomplete
    (unsealed) directory: a step must never hand on a half-written artifact.
    """
    if not storage.is_complete(uri):
        raise storage.IncompleteArtifactError(
            f"{uri}: no {storage.MANIFEST_NAME}; the step did not finish writing it"
        )
    manifest = storage.read_manifest(uri)
    blob = storage.read_bytes(storage.join(uri, storage.MANIFEST_NAME))
    files = manifest.files
    meta: dict[str, Any] = {
        "uri": uri,
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "manifest_sha256": hashlib.sha256(blob).hexdigest(),
        "content_sha256": manifest.content_sha256(),
        "config_fingerprint": cfg.fingerprint(),
        "config": cfg.model_dump(mode="json"),
    }
    if len(files) <= 16:  # small artifacts list each file's checksum directly
        meta["sha256"] = {f.path: f.sha256 for f in files}
    meta.update(_finite_or_text(extra))
    return meta


def _finite_or_text(value: Any) -> Any:
    """NaN/inf floats as text: KFP metadata is a protobuf Struct, which cannot hold them, and a
    diverged run's NaN loss must reach the artifact, not crash the step that records it."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite_or_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_text(v) for v in value]
    return value


def record_step(
    root: str,
    step: str,
    seconds: float,
    metrics: dict[str, Any],
    uris: dict[str, str],
    settings: dict[str, str] | None = None,
) -> dict:
    """Write ``steps/<step>.json`` (read by the run summary); returns the record.

    ``settings``: what the step decided at run time and why (a training stage's precision).
    """
    record = {
        "step": step,
        "seconds": round(seconds, 2),
        "metrics": metrics,
        "uris": uris,
        "settings": settings or {},
        "finished_at": time.time(),
    }
    storage.write_text(
        storage.join(root, STEP_DIR, f"{step}.json"), json.dumps(record, indent=1, default=str)
    )
    return record


def read_step_records(root: str) -> list[dict]:
    """Every step record of a run, in the order the steps finished."""
    prefix = storage.join(root, STEP_DIR)
    records = [json.loads(storage.read_text(u)) for u in storage.list_files(prefix) if u.endswith(".json")]
    return sorted(records, key=lambda r: r["finished_at"])


@contextmanager
def timed_step(root: str, step: str, started: float | None = None) -> Iterator[dict]:
    """Time a step body (or from ``started``, a wall-clock time, when it closes a chain of tasks);
    on success write its record from what the body put in the yielded dict."""
    started = time.time() if started is None else started
    out: dict[str, Any] = {"metrics": {}, "uris": {}, "settings": {}}
    yield out
    record_step(root, step, time.time() - started, out["metrics"], out["uris"], out["settings"])


# --------------------------------------------------------------------------------------------
# Pipeline run: open / close
# --------------------------------------------------------------------------------------------


def open_pipeline(
    cfg: RunConfig, root: str, data: str, arguments: dict[str, Any], kfp_run_id: str, pipeline_name: str
) -> str:
    """Start the MLflow parent run and write ``pipeline.json`` + ``config.yaml`` under the run root.

    ``pipeline.json`` holds everything `diffucoder pipeline rerun` needs: the resolved config and
    the pipeline arguments. Returns the parent run id.
    """
    from diffucoder import tracking

    preload(*TRACKING_MODULES)
    export_run_env(kfp_run_id=kfp_run_id, pipeline_name=pipeline_name)
    uri = tracking.configure(cfg.tracking)
    tags = {"diffucoder.run_root": root, "diffucoder.data_root": data}
    parent = tracking.start_pipeline_run(
        cfg,
        run_name=root.rstrip("/").rsplit("/", 1)[-1],
        tags=tags,
        data_hash=data.rstrip("/").rsplit("/", 1)[-1],
    )
    record = {
        "parent_run_id": parent,
        "tracking_uri": uri,
        "experiment": cfg.tracking.experiment,
        "kfp_run_id": kfp_run_id,
        "pipeline": pipeline_name,
        "run_root": root,
        "data_root": data,
        "arguments": arguments,
        "config_yaml": cfg.to_yaml(),
        "started_at": time.time(),
    }
    storage.write_text(storage.join(root, "config.yaml"), cfg.to_yaml())
    storage.write_text(storage.join(root, PIPELINE_RECORD), json.dumps(record, indent=1))
    return parent


def read_pipeline_record(root: str) -> dict[str, Any]:
    uri = storage.join(root, PIPELINE_RECORD)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: not a pipeline run root (no {PIPELINE_RECORD}; did the run start?)")
    return json.loads(storage.read_text(uri))


def close_pipeline(
    cfg: RunConfig, root: str, state: str, kfp_run_id: str, sandbox_mode: str, launcher: str
) -> str:
    """Exit-handler body: delete what the run launched, then close the parent run FINISHED/FAILED.

    Cleanup comes first and never masks the status: a failed delete is reported after the parent
    run is closed. Returns the MLflow status written (or "" when the run never opened).
    """
    from diffucoder import tracking

    preload(*TRACKING_MODULES)
    errors = []
    if sandbox_mode == "per-run" or launcher == "trainjob":
        try:
            cleanup_cluster(cfg, kfp_run_id, sandbox_mode, launcher)
        except Exception as exc:  # report after closing the run; a leak must not hide the status
            errors.append(f"cleanup of run {kfp_run_id}: {exc}")
    status = "FINISHED" if state.upper() == "SUCCEEDED" else "FAILED"
    record_uri = storage.join(root, PIPELINE_RECORD)
    if not storage.exists(record_uri):
        status = ""  # failed before the parent run existed: nothing to close
    else:
        record = json.loads(storage.read_text(record_uri))
        cfg.tracking.tracking_uri = record["tracking_uri"]
        if record["parent_run_id"]:
            try:  # the cost of what ran, failed runs included; never masks the status
                heldout = f"eval/{cfg.promotion.benchmark}/pass_at_1_{cfg.promotion.speed}"
                log_run_totals(cfg, record["parent_run_id"], heldout)
            except Exception as exc:
                errors.append(f"cost totals of run {record['parent_run_id']}: {exc}")
        tracking.end_pipeline_run(record["parent_run_id"], status=status, cfg=cfg.tracking)
        record.update({"status": status, "kfp_state": state, "finished_at": time.time()})
        storage.write_text(record_uri, json.dumps(record, indent=1))
    if errors:
        raise RuntimeError("; ".join(errors))
    return status


def cleanup_cluster(cfg: RunConfig, kfp_run_id: str, sandbox_mode: str, launcher: str) -> None:
    """Delete this run's per-run sandbox and any TrainJob it launched (names are deterministic)."""
    from diffucoder.k8s.launcher import TrainJobLauncher, load_api_client
    from diffucoder.k8s.sandbox_deploy import SandboxDeployer
    from diffucoder.k8s.trainjob import job_name

    api = load_api_client()
    if sandbox_mode == "per-run":
        SandboxDeployer(api, cfg.k8s).down(kfp_run_id)
    if launcher == "trainjob":
        jobs = TrainJobLauncher(api, cfg.k8s.namespace)
        for stage in STAGES:
            jobs.delete(job_name(kfp_run_id, stage))


def sandbox_endpoint(cfg: RunConfig, mode: str, url: str, kfp_run_id: str) -> str:
    """The sandbox URL the RL and evaluation steps use; "" = each starts a local subprocess server."""
    if mode not in SANDBOX_MODES:
        raise ValueError(f"sandbox_mode {mode!r}: expected one of {', '.join(SANDBOX_MODES)}")
    if mode == "local":
        return ""
    if mode == "shared":
        if not url:
            raise ValueError("sandbox_mode=shared needs sandbox_url (the shared sandbox Service URL)")
        return url
    from diffucoder.k8s.launcher import load_api_client
    from diffucoder.k8s.sandbox_deploy import SandboxDeployer

    return SandboxDeployer(load_api_client(), cfg.k8s).up(kfp_run_id)


# --------------------------------------------------------------------------------------------
# Data steps (docs/data.md "Scale-out: the per-shard steps")
# --------------------------------------------------------------------------------------------


INGEST_STARTED = "ingest_started_at"


def raw_sources(cfg: RunConfig, root: str, plan: DataPlan, stdlib_max_files: int) -> list[str]:
    """The raw inputs of the stage-1 corpus: ``data.sources.pretrain`` (generated:tiny = the CPython
    stdlib cut into raw shards), or one empty raw shard when the run builds no corpus."""
    from diffucoder.data.corpus import build_stdlib_corpus, write_doc_shards

    out = storage.join(root, "raw")
    if not plan.corpus:
        from diffucoder.data import io

        with io.output_dir(out) as path:
            write_doc_shards(path, [], cfg.data.shard_docs)  # the fan-outs need one item
        return [out]
    if not cfg.data.sources.generated("pretrain"):
        return list(cfg.data.sources.pretrain)
    build_stdlib_corpus(out, cfg.data, max_files=stdlib_max_files or None)
    return [out]


def ingest_units(cfg: RunConfig, root: str, inputs: list[str], started: float) -> list[dict[str, Any]]:
    """``[{"uri", "shard", "data_root"}]``, one per task of the fan-outs.

    ``started`` (when the ingest task began) is stored for the report step, whose record then times
    the whole corpus build: ingest, filter fan-out, dedup, finalize fan-out and report.

    Each item carries all its task needs, and the config goes to ``<data_root>/config.yaml``:
    kfp.local (2.17.3) hands a ParallelFor body the loop item in place of any other task output,
    so the fan-out tasks take nothing but item fields.
    """
    from diffucoder.data.prepare import ingest

    storage.write_text(storage.join(root, "config.yaml"), cfg.to_yaml())
    units = ingest(inputs, storage.join(root, "work"), cfg.data)
    storage.write_text(storage.join(root, "work", INGEST_STARTED), repr(started))
    if not units:
        raise ValueError(f"no input documents found in {inputs}")
    return [{"uri": u, "shard": i, "data_root": root} for i, u in enumerate(units)]


def ingest_started(root: str) -> float:
    """When the ingest task of this data root began (see :func:`ingest_units`).

    Raises:
        FileNotFoundError: the ingest step has not run on this data root (or ran before it recorded
            its start); rerun the data steps from ingest.
    """
    uri = storage.join(root, "work", INGEST_STARTED)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri} is missing: rerun the data steps from ingest for data root {root}")
    return float(storage.read_text(uri))


def data_config(root: str) -> RunConfig:
    """The config the ingest step stored for the fan-out tasks."""
    return config_from_yaml(storage.read_text(storage.join(root, "config.yaml")))


def filter_unit(root: str, uri: str, shard: int) -> dict[str, Any]:
    from diffucoder.data.prepare import filter_shard

    stats = filter_shard(uri, shard, storage.join(root, "work"), data_config(root).data)
    return {"total": stats["filter"]["total"], "kept": stats["filter"]["kept"]}


def dedup_plan(cfg: RunConfig, root: str) -> list[dict[str, Any]]:
    """``[{"lsh_task", "data_root"}]``, one per LSH task (items of the dedup fan-out, see ingest_units)."""
    from diffucoder.data.prepare import dedup_plan as plan

    return [{"lsh_task": t, "data_root": root} for t in range(plan(storage.join(root, "work"), cfg.data))]


def dedup_band(root: str, task: int) -> int:
    from diffucoder.data.prepare import dedup_band_step

    return dedup_band_step(storage.join(root, "work"), task)


def dedup(root: str) -> dict[str, Any]:
    from diffucoder.data.prepare import dedup_join_step

    result = dedup_join_step(storage.join(root, "work"))
    return {k: v for k, v in result.items() if isinstance(v, int | float)}


def finalize_unit(root: str, shard: int) -> int:
    from diffucoder.data.prepare import finalize_shard, load_removed

    work = storage.join(root, "work")
    docs, _ = finalize_shard(work, shard, corpus_uri(root), load_removed(work))
    return docs


def corpus_uri(root: str) -> str:
    return storage.join(root, "corpus")


def data_report(cfg: RunConfig, root: str) -> dict[str, Any]:
    """stats.json + reports for the corpus, then seal it (the data package seals local dirs; an
    s3:// corpus was written file by file by the fan-out tasks and is sealed here)."""
    from diffucoder.data.prepare import report_step

    out = corpus_uri(root)
    stats = report_step(storage.join(root, "work"), out, cfg.data)
    if storage.is_s3(out):
        storage.seal_dir(out)
    return stats["output"]


def tiny_tasks(cfg: RunConfig, root: str) -> str:
    """The tiny task sets, or an unused marker when no stage or evaluation of the run reads them."""
    from diffucoder.data.formats import write_tiny_task_sets

    if not read_plan(root).tiny_tasks:
        return unused(
            cfg, root, "tiny-tasks", "no stage source is generated:tiny and tiny_heldout is not evaluated"
        )
    out = storage.join(root, "tasks")
    write_tiny_task_sets(out, cfg.data.tiny_tasks)
    return out


def tokenizer(cfg: RunConfig, root: str, corpus: str, vocab_size: int) -> str:
    """The tokenizer packing uses: the plan's model (base or start model), else a BPE trained on the corpus."""
    plan = read_plan(root)
    if not plan.packs:
        return unused(cfg, root, "tokenizer", "no stage of this run reads packed data")
    if plan.tokenizer_from:
        return plan.tokenizer_from
    preload(*TOKENIZER_MODULES)
    from diffucoder.data.prepare import shard_files
    from diffucoder.data.tokenizer import train_tokenizer_from_shards

    out = storage.join(root, "tokenizer")
    train_tokenizer_from_shards(shard_files(corpus), vocab_size, out)
    return out


def midtrain_mix(cfg: RunConfig, root: str, corpus: str, tasks: str) -> str:
    """Stage 2's text: ``data.sources.midtrain`` (sealed filtered shards), or for generated:tiny the
    corpus interleaved with the train tasks as code."""
    if "midtrain" not in read_plan(root).stages:
        return unused(cfg, root, "midtrain-mix", "this run does not train stage 2")
    if not cfg.data.sources.generated("midtrain"):
        return cfg.data.sources.midtrain  # checked sealed when the run opened (check_inputs)
    from diffucoder.data.corpus import build_midtrain_mix
    from diffucoder.data.prepare import shard_files

    out = storage.join(root, "midtrain-mix")
    build_midtrain_mix(shard_files(corpus), storage.join(tasks, "train.jsonl"), out, cfg.data, seed=cfg.seed)
    return out


def pack(cfg: RunConfig, root: str, text: str, tokenizer_uri: str, stage: str) -> dict[str, Any]:
    if stage not in read_plan(root).stages:
        return {"uri": unused(cfg, root, f"pack-{stage}", f"this run does not train {stage}")}
    preload(*TOKENIZER_MODULES)
    from diffucoder.data.pack import pack_shards
    from diffucoder.data.prepare import shard_files

    out = storage.join(root, f"{stage}-packed")
    seq_len = getattr(cfg, stage).seq_len
    meta = pack_shards(shard_files(text), tokenizer_uri, seq_len, out, cfg.data.pack.rows_per_shard)
    return {"uri": out, **{k: v for k, v in meta.items() if isinstance(v, int | float)}}


# --------------------------------------------------------------------------------------------
# Training, evaluation, registration
# --------------------------------------------------------------------------------------------

STAGE_DATA = {"instruct": "sft/train.jsonl", "grpo": "rl/train.jsonl"}


def stage_data_uri(cfg: RunConfig, stage: str, artifact_uri: str) -> str:
    """The stage's input: the packed dir (stages 1-2), else ``data.sources.<stage>`` (3-4), where
    generated:tiny is the task set's file."""
    sub = STAGE_DATA.get(stage)
    if sub is None:
        return artifact_uri
    if cfg.data.sources.generated(stage):
        return storage.join(artifact_uri, sub)
    source = cfg.data.sources.of(stage)
    if not source:
        raise ValueError(_no_source(stage))
    return source


def train(
    cfg: RunConfig,
    root: str,
    stage: str,
    data_uri: str,
    init_uri: str,
    launcher: str,
    kfp_run_id: str,
    parent_run_id: str,
    sandbox_url: str = "",
) -> dict[str, Any]:
    """Run one training stage in this process, or as a Kubeflow Trainer TrainJob; return result.json."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: expected one of {', '.join(STAGES)}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    if sandbox_url:
        cfg.sandbox.url = sandbox_url
    out = storage.join(root, stage)
    started = time.time()
    if launcher == "in-process":
        preload(*TRAIN_MODULES, *(("diffucoder.rl.stage",) if stage == "grpo" else ()))
        from diffucoder.train.run import run

        run(cfg, stage, data_uri, out, init=init_uri or None, resume="auto")
    else:
        from diffucoder.k8s.launcher import TrainJobLauncher, launch_trainjob, load_api_client
        from diffucoder.k8s.trainjob import StageJob, build_trainjob

        job = StageJob(
            stage, data_uri, out, kfp_run_id, init_uri=init_uri or None, parent_run_id=parent_run_id or None
        )
        objs = build_trainjob(job, cfg, cfg.k8s)
        jobs = TrainJobLauncher(load_api_client(), cfg.k8s.namespace, cfg.k8s.trainjob.poll_interval_s)
        launch_trainjob(objs, jobs, timeout_s=cfg.k8s.trainjob.timeout_s)
    result_uri = storage.join(out, "result.json")
    if not storage.exists(result_uri):
        raise FileNotFoundError(f"stage {stage}: {result_uri} missing after training finished")
    result = json.loads(storage.read_text(result_uri))
    result["metrics"].update(log_stage_cost(cfg, result["run_id"], stage, time.time() - started))
    return result


def evaluate(
    cfg: RunConfig,
    root: str,
    label: str,
    model_uri: str,
    tasks_uri: str,
    benchmarks: str,
    sandbox_url: str,
    parent_run_id: str,
) -> dict[str, Any]:
    """Evaluate a model (tiny held-out tasks from the run's task set); returns metrics + file URIs."""
    preload(*EVAL_MODULES)
    from diffucoder.evaluation.run import run_evaluation

    if not is_unused(tasks_uri):
        cfg.evaluation.tiny_heldout_uri = storage.join(tasks_uri, "heldout.jsonl")
    if sandbox_url:
        cfg.sandbox.url = sandbox_url
    names = [b.strip() for b in benchmarks.split(",") if b.strip()] or None
    started = time.time()
    result = run_evaluation(
        cfg,
        model_uri,
        names,
        storage.join(root, f"eval-{label}"),
        parent_run_id=parent_run_id or None,
        label=label,
    )
    metrics = {
        **result.metrics,
        **log_stage_cost(cfg, result.mlflow_run_id, "evaluate", time.time() - started),
    }
    if result.mlflow_run_id and label in FINAL_EVALS:
        from diffucoder import tracking

        tracking.set_run_tags(result.mlflow_run_id, {FINAL_EVAL_TAG: "true"}, cfg=cfg.tracking)
    return {"metrics": metrics, "files": result.files, "mlflow_run_id": result.mlflow_run_id}


def register(
    cfg: RunConfig,
    root: str,
    model_uri: str,
    metrics: dict[str, float],
    files: dict[str, str],
    parent_run_id: str,
) -> str:
    """Register the final model under ``tracking.registered_model_name`` and point the alias at it.

    The model is logged to the pipeline run with its pass@1 per benchmark (at the promotion speed)
    as metrics ``eval/<benchmark>/pass_at_1``. The version is tagged with its held-out per-problem
    results and its data fingerprint, which promotion (:mod:`diffucoder.ops.promotion`) and
    ``skip_if_data_unchanged`` compare.
    """
    from diffucoder import tracking
    from diffucoder.ops.promotion import DATA_HASH_TAG, PER_PROBLEM_TAG

    preload(*TRACKING_MODULES)
    tracking.configure(cfg.tracking)
    tags = {
        "config_fingerprint": cfg.fingerprint(),
        "preset": cfg.preset,
        PER_PROBLEM_TAG: files.get("per_problem", ""),
        DATA_HASH_TAG: read_pipeline_record(root).get("data_fingerprint", ""),
    }
    return tracking.register_model(
        model_uri,
        cfg.tracking.registered_model_name,
        alias=cfg.tracking.registered_model_alias,
        tags=tags,
        run_id=parent_run_id or None,
        cfg=cfg.tracking,
        metrics=tracking.headline_metrics(metrics, cfg.promotion.speed),
    )


def promote(cfg: RunConfig, parent_run_id: str, version: str) -> str:
    """The pipeline's promote step: candidate vs champion (:func:`diffucoder.ops.promotion.promote`).

    A comparison the rules refuse (different problems, too few of them) does not fail the run: the
    champion stays, and the refusal is recorded as decision ``refused`` with its reason.
    """
    from diffucoder import tracking
    from diffucoder.ops.promotion import PromotionError
    from diffucoder.ops.promotion import promote as decide_and_move

    try:
        decision = decide_and_move(cfg, version=version, run_id=parent_run_id or None)
    except PromotionError as exc:
        tags = {
            "promotion/decision": "refused",
            "promotion/reason": str(exc),
            "promotion/candidate_version": version,
        }
        tracking.set_model_version_tags(cfg.tracking.registered_model_name, version, tags, cfg=cfg.tracking)
        if parent_run_id:
            tracking.set_run_tags(parent_run_id, tags, cfg=cfg.tracking)
        print(f"promotion: refused ({exc})")
        return "refused"
    print(f"promotion: {decision.outcome} ({decision.reason})")
    return decision.outcome


# --------------------------------------------------------------------------------------------
# Retrain only on new data
# --------------------------------------------------------------------------------------------

DATA_ARTIFACTS = ("corpus", "tasks", "tokenizer", "midtrain_mix", "pretrain_packed", "midtrain_packed")
SKIPPED_TAG = "diffucoder.skipped"


def stage_source_uris(cfg: RunConfig) -> dict[str, str]:
    """The sources stages 3-4 read directly (``data.sources.instruct``/``grpo`` when not generated):
    no data artifact covers them, so the fingerprint hashes them itself. Stage 1-2 sources reach
    the stages through the corpus, mix and packed artifacts, which are hashed already."""
    sources = cfg.data.sources
    return {
        stage: sources.of(stage) for stage in STAGE_DATA if sources.of(stage) and not sources.generated(stage)
    }


def _source_sha256(uri: str) -> str:
    """A file's sha256, or for a directory/prefix the hash of its files' relative names and hashes."""
    files = storage.list_files(uri)
    if not files:
        return hashlib.sha256(storage.read_bytes(uri)).hexdigest()
    digest = hashlib.sha256()
    for file_uri in files:
        name = file_uri[len(str(uri)) :].lstrip("/")
        digest.update(f"{name}\0{hashlib.sha256(storage.read_bytes(file_uri)).hexdigest()}\n".encode())
    return digest.hexdigest()


def data_fingerprint(contents: dict[str, str], stage_data_uris: dict[str, str]) -> str:
    """Content hash of what the stages train on: the data artifacts' content hashes (every file's
    path, size and sha256, not when it was written, so data steps that rerun without KFP's cache and
    write the same bytes give the same fingerprint) and the source each later stage reads directly
    (:func:`stage_source_uris`) with its files' hash."""
    missing = sorted(set(DATA_ARTIFACTS) - set(contents))
    if missing:
        raise ValueError(f"data fingerprint: no content hash for {missing}")
    key = {name: contents[name] for name in DATA_ARTIFACTS}
    for stage, uri in sorted(stage_data_uris.items()):
        if uri:
            key[stage] = f"{uri}#{_source_sha256(uri)}"
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def check_data(
    cfg: RunConfig, root: str, parent_run_id: str, fingerprint: str, skip_if_unchanged: bool
) -> bool:
    """Record the run's data fingerprint; False (skip training) when asked to and the champion has it.

    The parent run gets ``diffucoder.data_hash`` = the fingerprint, and when skipping
    ``diffucoder.skipped`` with the reason; the exit handler then closes it FINISHED.
    """
    from diffucoder import tracking
    from diffucoder.ops.promotion import DATA_HASH_TAG

    record = read_pipeline_record(root)
    record["data_fingerprint"] = fingerprint
    storage.write_text(storage.join(root, PIPELINE_RECORD), json.dumps(record, indent=1))
    tracking.configure(cfg.tracking)
    if parent_run_id:
        tracking.set_run_tags(parent_run_id, {DATA_HASH_TAG: fingerprint}, cfg=cfg.tracking)
    if not skip_if_unchanged:
        return True
    name = cfg.tracking.registered_model_name
    champion = tracking.model_version(name, alias=cfg.promotion.champion_alias, cfg=cfg.tracking)
    if champion is None or champion.tags.get(DATA_HASH_TAG) != fingerprint:
        return True
    reason = (
        f"data unchanged: fingerprint {fingerprint} equals that of {name} version {champion.version} "
        f"(alias {cfg.promotion.champion_alias!r}); training and evaluation skipped"
    )
    print(reason)
    if parent_run_id:
        tracking.set_run_tags(parent_run_id, {SKIPPED_TAG: reason}, cfg=cfg.tracking)
    record_step(root, "check-data", 0.0, {"skipped": 1}, {})
    return False
