"""Run the whole DAG on this machine through ``kfp.local`` and print what it produced.

``kfp.local.SubprocessRunner(use_venv=False)`` runs every lightweight component in this
interpreter's environment (no per-task pip install; docs/pipeline.md). Local runs use
``sandbox_mode=local`` (the RL and evaluation steps start a sandbox subprocess) and
``launcher=in-process``; kfp-kubernetes settings (GPUs, node selectors, timeouts) are ignored
locally by design.
"""

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffucoder import steps, storage
from diffucoder.config import RunConfig
from diffucoder.evaluation.paired import paired_difference, pass_rates, speed_costs, step_halving_drops
from diffucoder.home import resolve_path

# The metrics the summary shows per step (first match wins; the rest stay in MLflow / steps/*.json).
KEY_METRICS = (
    "tiny_heldout_pass_at_1_1x",
    "evalplus_pass_at_1_1x",
    "humaneval_pass_at_1_1x",
    "mbpp_pass_at_1_1x",
    "pass_rate/first_quarter",
    "pass_rate/last_quarter",
    "loss",
    "steps",
    "documents",
    "rows",
    "version",
)
HELDOUT = "tiny_heldout_pass_at_1_1x"
DETAIL_FILES = ("per_problem", "metrics", "config")  # evaluation files that sit beside report.html


def default_tracking_uri(cfg: RunConfig) -> str:
    """cfg / $MLFLOW_TRACKING_URI, else an embedded SQLite file beside a local output root (under
    the project home, diffucoder.home, for an s3:// one)."""
    if cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return cfg.tracking.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
    base = resolve_path(cfg.output_root if not storage.is_s3(cfg.output_root) else "runs")
    return f"sqlite:///{Path(base) / 'mlflow.db'}"


def local_arguments(
    cfg: RunConfig, preset: str, overrides: list[str], config_yaml: str = "", **params: Any
) -> dict[str, Any]:
    """Pipeline arguments for a local run: absolute local paths, embedded tracking, local sandbox."""
    args = {
        "preset": preset,
        "overrides": list(overrides),
        "config_yaml": config_yaml,
        "output_root": resolve_path(cfg.output_root),
        "tracking_uri": default_tracking_uri(cfg),
        # unset: every task reads the data shipped in its own installed package
        "benchmark_root": resolve_path(cfg.evaluation.data_root) if cfg.evaluation.data_root else "",
        "sandbox_mode": "local",
        "launcher": "in-process",
    }
    args.update({k: v for k, v in params.items() if v is not None})
    return args


def default_kfp_root(output_root: str) -> str:
    """kfp.local's own outputs (small KFP artifacts, executor logs): beside a local output root."""
    return (
        str(Path(output_root) / "kfp-local")
        if not storage.is_s3(output_root)
        else resolve_path("runs/kfp-local")
    )


def find_run_root(output_root: str, started_after: float) -> str:
    """The run root that a local run just created (kfp.local names the job itself)."""
    candidates = []
    for uri in storage.list_files(output_root):
        if uri.endswith("/" + steps.PIPELINE_RECORD) and "/data/" not in uri:
            root = uri[: -len(steps.PIPELINE_RECORD) - 1]
            record = steps.read_pipeline_record(root)
            if record.get("started_at", 0) >= started_after:
                candidates.append((record["started_at"], root))
    if not candidates:
        raise FileNotFoundError(
            f"no pipeline run under {output_root} started after {time.ctime(started_after)}"
        )
    return max(candidates)[1]


def run_local(
    arguments: dict[str, Any], pipeline_root: str, runner: str = "subprocess", registry: str | None = None
) -> str:
    """Execute the pipeline with kfp.local; returns the run root. Raises if any task failed.

    ``runner``: ``subprocess`` runs every step in this interpreter's environment; ``docker`` runs
    each in its image (pipelines/containers.py; ``registry`` names where the images are tagged).
    """
    from kfp import local

    if runner == "docker":
        from diffucoder_kfp import containers

        containers.use_images(registry)  # before the components are imported
        with containers.containers(arguments, pipeline_root, registry) as (docker, arguments):
            return _execute(docker, arguments, pipeline_root)
    return _execute(local.SubprocessRunner(use_venv=False), arguments, pipeline_root)


def _execute(runner: Any, arguments: dict[str, Any], pipeline_root: str) -> str:
    from diffucoder_kfp.diffucoder import diffucoder
    from kfp import local

    local.init(runner, pipeline_root=pipeline_root, raise_on_error=True)
    started = time.time()
    diffucoder(**arguments)
    return find_run_root(arguments["output_root"], started)


def _key_metrics(metrics: dict[str, Any], limit: int = 3) -> str:
    shown = [
        f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
        for k in KEY_METRICS
        if k in metrics
    ]
    return ", ".join(shown[:limit])


# (evaluation step, what the model had been through) in pipeline order
SIGNAL_STEPS = (
    ("eval-midtrain", "before instruct-tuning"),
    ("eval-instruct", "after instruct"),
    ("eval-grpo", "after coupled-GRPO"),
)


@dataclass(frozen=True)
class HeldoutPoint:
    """Held-out pass@1 of one evaluation step, with its per-problem pass rates when they are readable
    (every speed the step evaluated; ``rates_1x`` is the one the learning signal compares)."""

    label: str
    score: float
    rates: dict | None = None

    @property
    def rates_1x(self) -> dict | None:
        return {k: v for k, v in self.rates.items() if k[2] == "1x"} if self.rates else None


def heldout_points(by_step: dict[str, dict[str, Any]]) -> list[HeldoutPoint]:
    """The evaluated stages in pipeline order, each with its tiny held-out rows (from per_problem.jsonl)."""
    points = []
    for step, label in SIGNAL_STEPS:
        record = by_step.get(step)
        if record is None or record["metrics"].get(HELDOUT) is None:
            continue
        per_problem = record["uris"].get("per_problem")
        rates = None
        if per_problem and storage.exists(per_problem):
            rates = pass_rates(storage.read_text(per_problem), benchmark="tiny_heldout")
        points.append(HeldoutPoint(label, record["metrics"][HELDOUT], rates))
    return points


def learning_signal(points: list[HeldoutPoint]) -> str:
    """Held-out pass@1 through the evaluated stages; each change with its paired standard error."""
    if len(points) < 2:
        return ""
    lines = ["learning signal: held-out tiny tasks pass@1 (change +- paired SE over the same tasks)"]
    lines.append(f"  {points[0].score:.3f} {points[0].label}")
    for before, after in zip(points, points[1:], strict=False):
        change = f"{after.score - before.score:+.3f}"
        if before.rates_1x and after.rates_1x:
            with contextlib.suppress(ValueError):  # fewer than 2 shared tasks: no SE to give
                change = paired_difference(before.rates_1x, after.rates_1x).describe()
        lines.append(f"  {after.score:.3f} {after.label} ({change})")
    return "\n".join(lines)


def step_halving_signal(points: list[HeldoutPoint]) -> str:
    """What halving the decoding steps (1x -> 2x) costs on the held-out tasks at each evaluated
    stage that ran both speeds, and how that drop changed from stage to stage, problem by problem:
    the paper's finding (d) is a smaller drop after coupled-GRPO (arXiv 2506.20639 §5)."""
    costs = [(p, speed_costs(p.rates or {})) for p in points]
    costs = [(p, c) for p, c in costs if c]
    if not costs:
        return ""
    lines = ["halving the decoding steps (1x -> 2x), held-out tiny tasks (+- paired SE over the same tasks)"]
    for point, by_temperature in costs:
        for (_, temperature), cost in sorted(by_temperature.items()):
            lines.append(f"  {point.label}, T {temperature:g}: {cost.describe()}")
    for (before, _), (after, _) in zip(costs, costs[1:], strict=False):
        with contextlib.suppress(ValueError):  # fewer than 2 shared tasks: no SE to give
            change = paired_difference(step_halving_drops(before.rates), step_halving_drops(after.rates))
            lines.append(f"  drop change, {before.label} -> {after.label}: {change.describe()}")
    return "\n".join(lines)


def precision_summary(rows: list[dict[str, Any]]) -> str:
    """One line: the precision each training stage ran in and why (stages with one reason grouped)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        settings = r.get("settings", {})
        if "precision" in settings:
            groups.setdefault((settings["precision"], settings["precision_reason"]), []).append(r["step"])
    parts = [f"{', '.join(steps)} {precision} ({reason})" for (precision, reason), steps in groups.items()]
    return "precision: " + "; ".join(parts) if parts else ""


def rl_trend(grpo_metrics: dict[str, float]) -> str:
    """One line: stage 4's reward and pass rate on its own problems, first vs last quarter of rounds."""
    parts = []
    for key, label in (("reward/total", "reward"), ("pass_rate", "pass rate")):
        first, last = grpo_metrics.get(f"{key}/first_quarter"), grpo_metrics.get(f"{key}/last_quarter")
        if first is not None and last is not None:
            parts.append(f"{label} {first:.3f} -> {last:.3f} ({last - first:+.3f})")
    return (
        "coupled-GRPO on its training problems, first -> last quarter: " + ", ".join(parts) if parts else ""
    )


def summary(run_root: str) -> str:
    """The final table: every step's time, key metrics and artifact URIs; then the learning signal."""
    record = steps.read_pipeline_record(run_root)
    rows = steps.read_step_records(record["data_root"]) + steps.read_step_records(run_root)
    lines = [f"diffucoder pipeline run {run_root}  (status: {record.get('status', 'unknown')})", ""]
    width = max(len(r["step"]) for r in rows) if rows else 8
    lines.append(f"{'step':<{width}}  {'time':>8}  {'key metrics':<60}  artifacts")
    for r in rows:
        uris = " ".join(f"{k}={v}" for k, v in r["uris"].items() if k not in DETAIL_FILES)
        lines.append(f"{r['step']:<{width}}  {r['seconds']:>7.1f}s  {_key_metrics(r['metrics']):<60}  {uris}")
    by_step = {r["step"]: r for r in rows}
    lines.append("")
    points = heldout_points(by_step)
    signal, halving = learning_signal(points), step_halving_signal(points)
    trend = rl_trend(by_step.get("grpo", {}).get("metrics", {}))
    lines += [line for line in (precision_summary(rows), signal, halving, trend) if line]
    lines.append(
        f"MLflow: parent run {record['parent_run_id']} in experiment {record['experiment']!r}; "
        f"open the UI with\n  mlflow ui --backend-store-uri {record['tracking_uri']}"
    )
    reports = {
        r["step"]: r["uris"]["report"]
        for r in rows
        if r["step"].startswith("eval-") and "report" in r["uris"]
    }
    final = reports.get("eval-grpo") or reports.get("eval-final") or next(iter(reports.values()), None)
    if final:
        lines.append(f"HTML report: {final}")
    lines.append(f"rerun with the same resolved config: diffucoder pipeline rerun {run_root}")
    return "\n".join(lines)
