"""``diffucoder runs compare RUN_A RUN_B [...]``: MLflow runs side by side, plus a comparison plot.

    diffucoder runs compare 3f2a... 9bc1... --tracking-uri sqlite:///runs/tiny/mlflow.db --plot cmp.png

Prints the params whose values differ (the rest are counted, not listed) and every metric's latest
value per run, then writes a bar chart of the metrics the runs share. Run ids are MLflow run ids
(a pipeline's parent run, or stage runs); the data comes from ``tracking.compare_runs``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _cell(value: object, width: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return (text if len(text) <= width else text[: width - 1] + "~").ljust(width)


# (row label, metric) of the cost-and-quality block, in order
OPERATIONS_ROWS = (
    ("cost", "cost/amount"),
    ("GPU-hours", "cost/gpu_hours"),
    ("held-out pass@1", None),  # the run's held-out metric (its name follows the benchmark)
    ("pass@1 per GPU-hour", "cost/pass_at_1_per_gpu_hour"),
)


def operations_rows(cmp, heldout_metric: str) -> list[tuple[str, list]]:
    """Cost, held-out pass@1, pass@1 per GPU-hour and the promotion/skip tags, one row each."""
    rows = []
    for label, key in OPERATIONS_ROWS:
        values = cmp.metrics.get(key or heldout_metric)
        if values is not None:
            rows.append((label, values))
    rows += [(key, values) for key, values in cmp.tags.items()]
    return rows


def format_comparison(
    cmp, metric_filter: str = "", heldout_metric: str = "eval/tiny_heldout/pass_at_1_1x"
) -> str:
    """The side-by-side table: run names, cost and quality, differing params, then metrics."""
    width = 22
    names = [f"{n or '?'} ({rid[:8]})" for n, rid in zip(cmp.run_names, cmp.run_ids, strict=True)]
    ops = operations_rows(cmp, heldout_metric)
    key_width = max([len(k) for k in [*cmp.param_diffs, *cmp.metrics]] + [len(k) for k, _ in ops] + [10])
    rows = [
        " " * key_width + "  " + "".join(_cell(n, width) for n in names),
        "status".ljust(key_width) + "  " + "".join(_cell(s, width) for s in cmp.statuses),
    ]
    if ops:
        rows += ["", "cost and quality"]
        rows += [k.ljust(key_width) + "  " + "".join(_cell(v, width) for v in vals) for k, vals in ops]
    rows += [
        "",
        f"params that differ ({len(cmp.param_diffs)}; {cmp.same_params} identical)",
    ]
    rows += [
        k.ljust(key_width) + "  " + "".join(_cell(v, width) for v in vals)
        for k, vals in cmp.param_diffs.items()
    ]
    rows += ["", "metrics (latest value)"]
    rows += [
        k.ljust(key_width) + "  " + "".join(_cell(v, width) for v in vals)
        for k, vals in cmp.metrics.items()
        if metric_filter in k
    ]
    return "\n".join(rows)


def comparison_figure(cmp, metric_filter: str = "", max_metrics: int = 24):
    """Grouped bars: one group per metric every run has (filtered), one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shared = [
        k
        for k, vals in cmp.metrics.items()
        if metric_filter in k and all(v is not None and not math.isnan(v) for v in vals)
    ][:max_metrics]
    if not shared:
        raise ValueError(f"runs {', '.join(cmp.run_ids)} share no metric matching {metric_filter!r} to plot")
    x = np.arange(len(shared))
    bar = 0.8 / len(cmp.run_ids)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(shared) * len(cmp.run_ids)), 4))
    for i, (name, rid) in enumerate(zip(cmp.run_names, cmp.run_ids, strict=True)):
        ax.bar(x + i * bar, [cmp.metrics[k][i] for k in shared], bar, label=f"{name} ({rid[:8]})")
    ax.set_xticks(x + bar * (len(cmp.run_ids) - 1) / 2, shared, rotation=60, ha="right", fontsize=7)
    ax.legend(fontsize=7)
    ax.set_title("run comparison (latest metric values)")
    fig.tight_layout()
    return fig


def _compare(args: argparse.Namespace) -> int:
    from diffucoder import tracking
    from diffucoder.config import TrackingConfig

    cfg = TrackingConfig(tracking_uri=args.tracking_uri)
    cmp = tracking.compare_runs(args.run_ids, cfg=cfg)
    print(format_comparison(cmp, args.metrics, heldout_metric=args.heldout_metric))
    if args.plot != "none":
        plot = Path(args.plot or f"runs/compare-{'-'.join(r[:8] for r in args.run_ids)}.png")
        plot.parent.mkdir(parents=True, exist_ok=True)
        comparison_figure(cmp, args.metrics).savefig(plot, dpi=120)
        print(f"\nplot: {plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("runs", help="inspect and compare MLflow runs")
    inner = parser.add_subparsers(dest="runs_command", required=True)
    p = inner.add_parser("compare", help="params that differ and metrics, side by side, plus a plot")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="MLflow run ids (two or more)")
    p.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else ./mlflow.db")
    p.add_argument("--metrics", default="", help="only metrics whose name contains this text")
    p.add_argument(
        "--heldout-metric",
        default="eval/tiny_heldout/pass_at_1_1x",
        help="the held-out pass@1 metric shown beside cost (the promotion benchmark's)",
    )
    p.add_argument("--plot", default=None, help="PNG path (default runs/compare-<ids>.png); 'none' to skip")
    p.set_defaults(func=_compare)
