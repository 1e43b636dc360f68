"""``diffucoder runs list`` and ``diffucoder runs compare``: which runs exist, and which one is better.

    diffucoder runs list --tracking-uri sqlite:///runs/mlflow.db
    diffucoder runs compare 3f2a9c1e 9bc1d2e3 --plot cmp.png
    diffucoder runs compare diffucoder-tiny-a/evaluate-grpo diffucoder-tiny-b/evaluate-grpo

``list`` prints the newest pipeline runs, each with its headline scores and its stage runs (name,
short id, status, duration, headline metric). ``compare`` takes what ``list`` prints: a run id or a
prefix of one, a run name, or ``PIPELINE/STAGE`` (a pipeline run's name or id prefix, then a stage
run's name). It prints headline metrics first with each run's change from the first run and the
better value marked ``*``, then the params that differ (in full, wrapped), then every other metric;
``--plot`` draws scores and throughputs on separate panels, and the histories of metrics logged
over steps (losses, rewards) as curves. The data comes from ``tracking.compare_runs``.
"""

from __future__ import annotations

import argparse
import math
import re
from datetime import UTC, datetime
from pathlib import Path

WIDTH = 24  # characters per run column

# --------------------------------------------------------------------------------------------
# Which metrics matter, and which way is better
# --------------------------------------------------------------------------------------------

_PASS_AT_1 = re.compile(r"^eval/[^/]+/(pass_at_1(_[a-z0-9]+)?|grpo_change)$")
HIGHER_IS_BETTER = ("pass_at_", "grpo_change", "tokens_per_s", "reward/", "pass_rate", "per_gpu_hour")
LOWER_IS_BETTER = ("loss", "cost/amount", "cost/gpu", "time/", "step_time", "/kl", "rel_drop")


def metric_rank(name: str) -> int:
    """Order of a metric in listings: pass@1 and GRPO's change, cost, other scores, throughput,
    training curves, the rest."""
    if _PASS_AT_1.match(name):
        return 0
    for rank, prefix in enumerate(("cost/", "eval/", "throughput/", ("train/", "grpo/", "reward/")), 1):
        if name.startswith(prefix):
            return rank
    return 5


def direction(name: str) -> int:
    """+1 when a higher value is better, -1 when lower is, 0 when neither (AR-ness, lr, counts)."""
    if any(part in name for part in HIGHER_IS_BETTER):
        return 1
    if any(part in name for part in LOWER_IS_BETTER):
        return -1
    return 0


def headline(metrics: dict[str, float], limit: int = 4) -> list[str]:
    """A run's few metrics worth a glance: pass@1 and GRPO's change, else its loss or reward."""
    picks = sorted((k for k in metrics if _PASS_AT_1.match(k)), key=lambda k: (k.count("temp"), k))
    if not picks:
        picks = [k for k in ("train/loss", "grpo/loss", "reward/total/mean") if k in metrics]
    return picks[:limit]


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.4g}"


def _short(metrics: dict[str, float], keys: list[str]) -> str:
    return ", ".join(f"{k} {_number(metrics[k])}" for k in keys)


# --------------------------------------------------------------------------------------------
# runs list
# --------------------------------------------------------------------------------------------


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC") if ms else "-"


def _duration(run) -> str:
    if not run.end_time:
        return "running" if run.status == "RUNNING" else "-"
    seconds = round((run.end_time - run.start_time) / 1000)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def format_run_list(pipelines, tracking_uri: str) -> str:
    """Each pipeline run (name, id, status, start, duration, scores) with its stage runs indented."""
    if not pipelines:
        return f"no pipeline runs in {tracking_uri}"
    lines = [f"pipeline runs in {tracking_uri}, newest first (ids: the first 8 characters suffice)"]
    for parent, stages in pipelines:
        lines += [
            "",
            f"{parent.name}  {parent.run_id[:8]}  {parent.status}  {_when(parent.start_time)}  "
            f"{_duration(parent)}  preset {parent.tags.get('diffucoder.preset', '?')}",
        ]
        if keys := headline(parent.metrics, limit=8):
            lines.append(f"    {_short(parent.metrics, keys)}")
        width = max([len(s.name) for s in stages] + [8])
        for stage in stages:
            lines.append(
                f"  {stage.name.ljust(width)}  {stage.run_id[:8]}  {stage.status:<8}  "
                f"{_duration(stage):>8}  {_short(stage.metrics, headline(stage.metrics, limit=2))}".rstrip()
            )
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    from diffucoder import tracking
    from diffucoder.config import TrackingConfig

    cfg = TrackingConfig(tracking_uri=args.tracking_uri)
    pipelines = tracking.recent_pipeline_runs(args.limit, experiment=args.experiment, cfg=cfg)
    print(format_run_list(pipelines, tracking.resolve_tracking_uri(cfg)))
    return 0


# --------------------------------------------------------------------------------------------
# runs compare
# --------------------------------------------------------------------------------------------


def _wrap(text: str, width: int) -> list[str]:
    """Cut ``text`` into lines of ``width`` characters (paths have no spaces to break at)."""
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


def _row(key: str, cells: list[str], key_width: int) -> list[str]:
    """One table row; a cell longer than the column continues on the next lines, nothing is cut."""
    wrapped = [_wrap(c, WIDTH - 2) for c in cells]
    height = max(len(w) for w in wrapped)
    return [
        (key if i == 0 else "").ljust(key_width)
        + "  "
        + "".join((w[i] if i < len(w) else "").ljust(WIDTH) for w in wrapped).rstrip()
        for i in range(height)
    ]


def metric_cells(name: str, values: list[float | None]) -> list[str]:
    """Each run's value, its change from the first run, and ``*`` on the better value(s)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    sense = direction(name)
    best = (max(present) if sense > 0 else min(present)) if present and sense else None
    marked = best is not None and len(set(present)) > 1
    cells = []
    for i, value in enumerate(values):
        text = _number(value)
        first = values[0]
        if i > 0 and value is not None and first is not None and not (math.isnan(value) or math.isnan(first)):
            text += f" ({value - first:+.3g})"
        if marked and value == best:
            text += " *"
        cells.append(text)
    return cells


def format_comparison(cmp, metric_filter: str = "") -> str:
    """The side-by-side table: which runs, headline metrics, params that differ, other metrics."""
    metrics = sorted(
        (k for k in cmp.metrics if metric_filter in k), key=lambda k: (metric_rank(k), k.count("temp"), k)
    )
    top = [k for k in metrics if metric_rank(k) <= 1]
    rest = [k for k in metrics if metric_rank(k) > 1]
    key_width = max([len(k) for k in [*cmp.param_diffs, *metrics, *cmp.tags]] + [12])
    rows = _row("run", list(cmp.run_names), key_width)
    rows += _row("id", list(cmp.run_ids), key_width)
    if any(cmp.parents):
        rows += _row("pipeline", [p or "-" for p in cmp.parents], key_width)
    rows += _row("status", list(cmp.statuses), key_width)
    rows += ["", "headline metrics (change from the first run; * = better)"]
    for key in top:
        rows += _row(key, metric_cells(key, cmp.metrics[key]), key_width)
    for key, values in cmp.tags.items():
        rows += _row(key, [v or "-" for v in values], key_width)
    rows += ["", f"params that differ ({len(cmp.param_diffs)}; {cmp.same_params} identical)"]
    for key, values in cmp.param_diffs.items():
        rows += _row(key, ["-" if v is None else v for v in values], key_width)
    rows += ["", "other metrics (latest value)"]
    for key in rest:
        rows += _row(key, metric_cells(key, cmp.metrics[key]), key_width)
    return "\n".join(rows)


def _labels(cmp) -> list[str]:
    return [
        f"{name} {rid[:8]}" + (f" ({parent})" if parent else "")
        for name, rid, parent in zip(cmp.run_names, cmp.run_ids, cmp.parents, strict=True)
    ]


def _shared(cmp, keys) -> list[str]:
    return [k for k in keys if all(v is not None and not math.isnan(v) for v in cmp.metrics[k])]


def _bars(ax, cmp, keys: list[str], title: str) -> None:
    """Grouped bars with value labels: one group per metric, one bar per run."""
    import numpy as np

    x = np.arange(len(keys))
    bar = 0.8 / len(cmp.run_ids)
    for i, label in enumerate(_labels(cmp)):
        values = [cmp.metrics[k][i] for k in keys]
        drawn = ax.bar(x + i * bar, values, bar, label=label)
        ax.bar_label(drawn, labels=[_number(v) for v in values], fontsize=6, padding=1)
    ax.set_xticks(x + bar * (len(cmp.run_ids) - 1) / 2, keys, rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.margins(y=0.15)


def comparison_figure(cmp, metric_filter: str = "", max_histories: int = 4):
    """Scores (in [0, 1]) and throughputs on separate bar panels, then the curves of metrics the
    runs logged over more than one step. Raises ValueError when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted((k for k in cmp.metrics if metric_filter in k), key=lambda k: (metric_rank(k), k))
    shared = _shared(cmp, keys)
    scores = [
        k
        for k in shared
        if direction(k) > 0
        and "throughput" not in k
        and all(0 <= v <= 1 for v in cmp.metrics[k])
        and not k.startswith("cost/")
    ][:12]
    speeds = [k for k in shared if "tokens_per_s" in k][:8]
    curves = [k for k in keys if len(cmp.histories.get(k, [])) and max(map(len, cmp.histories[k])) > 1]
    panels = [p for p in (("scores", scores), ("throughput (tokens/s)", speeds)) if p[1]]
    curves = curves[:max_histories]
    if not panels and not curves:
        raise ValueError(
            f"runs {', '.join(r[:8] for r in cmp.run_ids)} share no score, throughput or metric history "
            f"matching {metric_filter!r} to plot"
        )
    n = len(panels) + len(curves)
    fig, axes = plt.subplots(n, 1, figsize=(8, 3.2 * n), squeeze=False)
    for ax, (title, panel_keys) in zip(axes[: len(panels), 0], panels, strict=True):
        _bars(ax, cmp, panel_keys, title)
    for ax, key in zip(axes[len(panels) :, 0], curves, strict=True):
        for label, points in zip(_labels(cmp), cmp.histories[key], strict=True):
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker=".", label=label)
        ax.set_title(f"{key} over steps", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _compare(args: argparse.Namespace) -> int:
    from diffucoder import tracking
    from diffucoder.config import TrackingConfig

    cfg = TrackingConfig(tracking_uri=args.tracking_uri)
    run_ids = [tracking.resolve_run(ref, cfg=cfg) for ref in args.runs]
    cmp = tracking.compare_runs(run_ids, cfg=cfg)
    print(format_comparison(cmp, args.metrics))
    if args.plot:
        plot = Path(args.plot)
        plot.parent.mkdir(parents=True, exist_ok=True)
        comparison_figure(cmp, args.metrics).savefig(plot, dpi=120)
        print(f"\nplot: {plot.resolve()}")
    return 0


URI_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the default store, docs/storage-and-tracking.md)"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("runs", help="list and compare MLflow runs")
    inner = parser.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    p = inner.add_parser(
        "list",
        help="the newest pipeline runs with their stage runs and scores",
        description="The newest pipeline runs, each with its headline scores and its stage runs.",
    )
    p.add_argument("--tracking-uri", default=None, help=URI_HELP)
    p.add_argument("--experiment", default=None, help="only this MLflow experiment (default: all)")
    p.add_argument("--limit", type=int, default=5, help="how many pipeline runs (default 5)")
    p.set_defaults(func=_list)
    p = inner.add_parser(
        "compare",
        help="runs side by side: headline metrics with changes, params that differ, a plot",
        description="Runs side by side. RUN is what `diffucoder runs list` prints: a run id or its "
        "first characters, a run name, or PIPELINE/STAGE (e.g. diffucoder-tiny-a1b2/evaluate-grpo).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more runs")
    p.add_argument("--tracking-uri", default=None, help=URI_HELP)
    p.add_argument("--metrics", default="", help="only metrics whose name contains this text")
    p.add_argument("--plot", default=None, metavar="PNG", help="also draw the comparison into this PNG file")
    p.set_defaults(func=_compare)
