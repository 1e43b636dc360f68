"""Training, evaluation and registration of a run's model."""

from __future__ import annotations

import json
import time
from typing import Any

from diffucoder import logs, storage
from diffucoder.config import RunConfig
from diffucoder.ops.cost import FINAL_EVAL_TAG, log_stage_cost
from diffucoder.preload import preload
from diffucoder.steps.data_plan import is_unused, no_source
from diffucoder.steps.preloads import EVAL_MODULES, TRACKING_MODULES, TRAIN_MODULES
from diffucoder.steps.records import read_pipeline_record
from diffucoder.train.config import STAGES

LAUNCHERS = ("in-process", "trainjob")

FINAL_EVALS = ("grpo", "final")  # evaluation labels of the model a run registers

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
        raise ValueError(no_source(stage))
    return source


def train(
    cfg: RunConfig,
    *,
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
        logs.quiet_per_request_logs()  # coupled-GRPO's rewards: a line per sandbox request otherwise
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
    *,
    root: str,
    label: str,
    model_uri: str,
    tasks_uri: str,
    benchmarks: str,
    sandbox_url: str,
    parent_run_id: str,
) -> dict[str, Any]:
    """Evaluate a model (tiny held-out tasks from the run's task set); returns metrics + file URIs."""
    logs.quiet_per_request_logs()  # a line per sandbox request otherwise
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
    *,
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
