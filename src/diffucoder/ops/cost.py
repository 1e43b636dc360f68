"""Cost per run: GPU-seconds (wall time x GPUs requested) and their price, per stage and per run.

A stage's GPUs are what it requests on the cluster (:func:`diffucoder.ops.planner.stage_gpus`:
the ``k8s`` section's nodes x GPUs per node; evaluation pods ``plan.eval_gpus``), so a local run is
priced as the same stages would be on the cluster for the same wall time. Metrics, grouped under
``cost/``: each stage's MLflow run gets ``cost/gpus``, ``cost/gpu_seconds`` and ``cost/amount``;
the pipeline's parent run gets the sums (``cost/gpu_seconds``, ``cost/gpu_hours``, ``cost/amount``)
and, when the run evaluated the held-out benchmark, ``cost/pass_at_1_per_gpu_hour``.
"""

from __future__ import annotations

from diffucoder import tracking
from diffucoder.config import RunConfig
from diffucoder.ops.planner import stage_gpus

# tag of the evaluation run that scored the model a pipeline run registers (its held-out pass@1 is the run's)
FINAL_EVAL_TAG = "diffucoder.final_eval"


def stage_cost(cfg: RunConfig, stage: str, seconds: float) -> dict[str, float]:
    gpus = stage_gpus(cfg, stage)
    gpu_seconds = seconds * gpus
    return {
        "cost/gpus": float(gpus),
        "cost/wall_seconds": seconds,
        "cost/gpu_seconds": gpu_seconds,
        "cost/amount": gpu_seconds / 3600 * cfg.plan.gpu_hour_price,
    }


def log_stage_cost(cfg: RunConfig, run_id: str | None, stage: str, seconds: float) -> dict[str, float]:
    """Price ``seconds`` of ``stage`` and log it to the stage's MLflow run (when there is one)."""
    cost = stage_cost(cfg, stage, seconds)
    if run_id:
        tracking.log_run_metrics(run_id, cost, cfg=cfg.tracking)
    return cost


def log_run_totals(cfg: RunConfig, parent_run_id: str, heldout_metric: str) -> dict[str, float]:
    """Sum the stage runs' cost into the parent run; pass@1 per GPU-hour when the held-out score is known."""
    children = tracking.child_runs(parent_run_id, cfg=cfg.tracking)
    gpu_seconds = sum(m.get("cost/gpu_seconds", 0.0) for _, _, m in children)
    totals = {
        "cost/gpu_seconds": gpu_seconds,
        "cost/gpu_hours": gpu_seconds / 3600,
        "cost/amount": sum(m.get("cost/amount", 0.0) for _, _, m in children),
    }
    scores = [
        m[heldout_metric] for _, tags, m in children if heldout_metric in m and tags.get(FINAL_EVAL_TAG)
    ]
    if scores and gpu_seconds > 0:
        totals[heldout_metric] = scores[-1]
        totals["cost/pass_at_1_per_gpu_hour"] = scores[-1] / totals["cost/gpu_hours"]
    tracking.log_run_metrics(parent_run_id, totals, cfg=cfg.tracking)
    return totals
