"""A self-contained HTML report of one evaluation run (one file; plots embedded as base64 PNG).

Sections: score table (pass@k per benchmark, speed and temperature, best marked, with the number of
problems n and a 95% interval for each best score), 1x vs 2x bars and the relative drop from 1x to 2x
per benchmark and temperature with its paired SE (only when both speeds ran; paper finding (d)),
AR-ness curves (local@k and global@k, paper §4.1 / Fig. 3-4), decode-order heatmaps for a few
problems (the step at which each position was unmasked, paper §C.2), throughput (tokens/s per speed,
seconds per phase), and failing samples taken from every benchmark in turn, each with its prompt,
failing test, verdict and error. Everything the page shows is escaped: completions are untrusted text.

matplotlib and torch are imported by the sections that draw: a samples file's report has no decoding
to plot, so scoring one never loads them.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import defaultdict
from typing import TYPE_CHECKING

from diffucoder.evaluation.metrics import ProblemResult, SampleResult, pass_rates_of, temp_label
from diffucoder.evaluation.paired import speed_costs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.best{font-weight:bold;background:#eef7ee}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px;max-height:300px}
img{max-width:100%}details{margin:4px 0}
"""


def _png(fig: Figure) -> str:
    """An <img> with the figure inline. Figures are built with the object API (no pyplot state),
    so rendering works headless on CI and pipeline pods and leaks nothing between reports."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def wilson_interval(score: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% for z=1.96) of a pass rate over ``n`` problems.

    Written out rather than taken from a stats package: it is one formula, and unlike the normal
    approximation it stays inside [0, 1] and is not zero-width at a score of 0 or 1.
    """
    centre = (score + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(score * (1 - score) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _problem_counts(results: list[ProblemResult]) -> dict[tuple[str, str], int]:
    """How many distinct problems each (benchmark, speed) was scored on."""
    tasks: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in results:
        tasks[r.benchmark, r.speed].add(r.task_id)
    return {key: len(ids) for key, ids in tasks.items()}


def _best_cell(score: float | None, n: int | None) -> str:
    if score is None:
        return "<td></td>"
    if not n:
        return f"<td>{100 * score:.1f}</td>"
    low, high = wilson_interval(score, n)
    return f"<td>{100 * score:.1f} <small>[{100 * low:.1f}, {100 * high:.1f}]</small></td>"


def _score_table(
    metrics: dict[str, float],
    benchmarks: list[str],
    speeds: list[str],
    temps: list[float],
    k: int,
    counts: dict[tuple[str, str], int],
) -> str:
    head = "".join(f"<th>{s} {temp_label(t)}</th>" for s in speeds for t in temps)
    best_head = "".join(f"<th>{s} best [95% interval]</th>" for s in speeds)
    rows = []
    for bench in [*benchmarks, "evalplus"]:
        n = max((counts.get((bench, s), 0) for s in speeds), default=0)
        cells = []
        for speed in speeds:
            best_t = metrics.get(f"{bench}_best_temp_{speed}")
            for t in temps:
                v = metrics.get(f"{bench}_pass_at_{k}_{speed}_{temp_label(t)}")
                cls = ' class="best"' if best_t == t else ""
                cells.append(f"<td{cls}>{'' if v is None else f'{100 * v:.1f}'}</td>")
        bests = "".join(
            _best_cell(metrics.get(f"{bench}_pass_at_{k}_{s}"), counts.get((bench, s))) for s in speeds
        )
        if any(c != "<td></td>" for c in cells) or "<td></td>" * len(speeds) != bests:
            n_cell = f"<td>{n}</td>" if n else "<td>HumanEval+ and MBPP+ mean</td>"
            rows.append(f"<tr><td class=l>{html.escape(bench)}</td>{n_cell}{''.join(cells)}{bests}</tr>")
    return (
        f"<table><tr><th class=l>pass@{k} (%)</th><th>problems (n)</th>{head}{best_head}</tr>"
        f"{''.join(rows)}</table>"
    )


def _speed_bars(metrics: dict[str, float], benchmarks: list[str], speeds: list[str], k: int) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    width = 0.8 / max(len(speeds), 1)
    top = 0.0
    for i, speed in enumerate(speeds):
        values = [100 * metrics.get(f"{b}_pass_at_{k}_{speed}", 0.0) for b in benchmarks]
        bars = ax.bar([j + i * width for j in range(len(benchmarks))], values, width, label=speed)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)  # a zero bar has no height: its label shows it
        top = max(top, *values)
    ax.set_xticks([j + width * (len(speeds) - 1) / 2 for j in range(len(benchmarks))], benchmarks)
    ax.set_ylim(0, min(100.0, max(10.0, top * 1.2)))
    ax.set_ylabel(f"pass@{k} (%, best temperature)")
    ax.set_title("steps = length (1x) vs length / 2 (2x)")
    ax.legend()
    return _png(fig)


def _speed_cost_table(results: list[ProblemResult]) -> str:
    """Pass rate at 1x and 2x on the same problems, the drop and the relative drop, +- paired SE."""
    costs = speed_costs(pass_rates_of(results))
    if not costs:
        return ""
    rows = []
    for (bench, temp), cost in sorted(costs.items()):
        p = cost.pair
        relative = (
            f"{100 * cost.relative:+.1f} &plusmn; {100 * cost.relative_se:.1f}"
            if cost.relative is not None
            else "undefined"
        )
        rows.append(
            f"<tr><td class=l>{html.escape(bench)}</td><td>{temp:g}</td><td>{p.problems}</td>"
            f"<td>{100 * p.after:.1f}</td><td>{100 * p.before:.1f}</td>"
            f"<td>{100 * p.diff:+.1f} &plusmn; {100 * p.se:.1f}</td><td>{relative}</td>"
            f"<td>{p.up} / {p.down}</td></tr>"
        )
    return (
        "<p>What halving the steps costs, problem by problem (&plusmn; paired standard error; the "
        "relative drop divides by the 1x pass rate). After coupled-GRPO the paper finds this drop "
        "smaller (arXiv 2506.20639 &sect;5, finding (d)).</p>"
        "<table><tr><th class=l>benchmark</th><th>T</th><th>problems</th><th>pass rate 1x (%)</th>"
        "<th>2x (%)</th><th>drop (points)</th><th>relative drop (%)</th><th>worse / better at 2x</th>"
        f"</tr>{''.join(rows)}</table>"
    )


def _arness_curves(metrics: dict[str, float], speeds: list[str]) -> str:
    if not any(name.startswith("arness_") for name in metrics):
        return "<p>No AR-ness was measured (no completion had a decode trace).</p>"
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3))
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, ("local", "global"), strict=True):
        for speed in speeds:
            prefix = f"arness_{kind}_at_"
            points = sorted(
                (int(name[len(prefix) :].split("_")[0]), v)
                for name, v in metrics.items()
                if name.startswith(prefix) and name.endswith(f"_{speed}")
            )
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=speed)
        ax.set_xlabel("k")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{kind} AR-ness@k")
        ax.legend()
    return _png(fig)


def _heatmaps(results: list[ProblemResult], count: int) -> str:
    """Decode-order heatmap of the first ``count`` traced samples (one row each)."""
    import torch

    from diffucoder.decoding.visualize import decode_order_figure

    traced = [(r, s) for r in results for s in r.samples if s.trace][:count]
    if not traced:
        return "<p>No decode traces were recorded.</p>"
    rows = "".join(
        f"<li>row {i}: {html.escape(f'{r.benchmark} {r.task_id} ({_point(r)})')}</li>"
        for i, (r, _) in enumerate(traced)
    )
    length = min(len(s.trace) for _, s in traced)
    trace = torch.tensor([s.trace[:length] for _, s in traced])
    return (
        _png(decode_order_figure(trace, "decode order (colour = unmask step / last step)"))
        + f"<ol start=0>{rows}</ol>"
    )


def _point(r: ProblemResult) -> str:
    """The grid point of a result ("1x, T=0.2"), or "samples" for a scored samples file."""
    return r.speed if r.temperature is None else f"{r.speed}, T={r.temperature:g}"


def sample_failures(results: list[ProblemResult], limit: int) -> list[tuple[ProblemResult, SampleResult]]:
    """Up to ``limit`` failing samples, taken from each benchmark in turn (in file order within
    one), so every benchmark with failures shows some, not only the first file's."""
    queues = {}
    for r in results:
        for s in r.samples:
            if not s.passed:
                queues.setdefault(r.benchmark, []).append((r, s))
    picked: list[tuple[ProblemResult, SampleResult]] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues.values()):
        picked += [q[depth] for q in queues.values() if depth < len(q)][: limit - len(picked)]
        depth += 1
    return picked


def _failure(r: ProblemResult, s: SampleResult) -> str:
    """One failing sample: the prompt, the failing test, the verdict and the error, then the program."""
    tiers = ", ".join(f"{name} {status}" for name, status in s.tiers.items())
    title = (
        f"{r.benchmark} {r.task_id} ({_point(r)}): {s.verdict} "
        f"({s.n_passed}/{s.n_tests} tests passed{'; ' + tiers if tiers else ''})"
    )
    parts = [f"<details><summary>{html.escape(title)}</summary>"]
    if r.prompt:
        parts.append(f"<p>prompt</p><pre>{html.escape(r.prompt)}</pre>")
    if s.failing_test:
        parts.append(f"<p>failing test</p><pre>{html.escape(s.failing_test)}</pre>")
    error = s.infra_error or s.error
    if error:
        parts.append(f"<p>{'infra error' if s.infra_error else 'error'}</p><pre>{html.escape(error)}</pre>")
    parts.append(f"<p>program</p><pre>{html.escape(s.program)}</pre></details>")
    return "".join(parts)


def _failures(results: list[ProblemResult], limit: int) -> str:
    items = sample_failures(results, limit)
    if not items:
        return "<p>No failing samples.</p>"
    by_verdict: dict[str, int] = defaultdict(int)
    per_benchmark: dict[str, int] = defaultdict(int)
    for r in results:
        for s in r.samples:
            if not s.passed:
                by_verdict[s.verdict] += 1
                per_benchmark[r.benchmark] += 1
    counts = ", ".join(f"{html.escape(v)}: {n}" for v, n in sorted(by_verdict.items()))
    benches = ", ".join(f"{html.escape(b)}: {n}" for b, n in per_benchmark.items())
    intro = (
        f"<p>All failing samples by verdict: {counts}; by benchmark: {benches}. "
        f"{len(items)} shown, taken from each benchmark in turn.</p>"
    )
    return intro + "".join(_failure(r, s) for r, s in items)


def _throughput(metrics: dict[str, float], timings: dict[str, float], speeds: list[str]) -> str:
    """Decoding speed per speed setting, and where the evaluation's time went."""
    rows = [
        f"<tr><td class=l>decoding at {html.escape(speed)}</td><td>{metrics[f'tokens_per_s_{speed}']:.1f} tokens/s</td></tr>"
        for speed in speeds
        if f"tokens_per_s_{speed}" in metrics
    ]
    labels = {
        "reference_s": "reference solutions",
        "generation_s": "decoding",
        "sandbox_s": "sandbox execution",
        "total_s": "total",
    }
    rows += [
        f"<tr><td class=l>{label}</td><td>{timings[key]:.1f} s</td></tr>"
        for key, label in labels.items()
        if key in timings
    ]
    if timings.get("samples") and timings.get("total_s"):
        rows.append(
            f"<tr><td class=l>samples scored</td><td>{timings['samples'] / timings['total_s']:.2f} /s</td></tr>"
        )
    if not rows:
        return "<p>No timings were recorded.</p>"
    return f"<table>{''.join(rows)}</table>"


def _header_rows(notes: dict[str, str]) -> str:
    """The header table; a value that is a web address (the MLflow run) is a link."""
    cells = []
    for key, value in notes.items():
        shown = html.escape(value)
        if value.startswith(("http://", "https://")):
            shown = f'<a href="{html.escape(value, quote=True)}">{shown}</a>'
        cells.append(f"<tr><td class=l>{html.escape(key)}</td><td class=l>{shown}</td></tr>")
    return "".join(cells)


def render_report(
    metrics: dict[str, float],
    results: list[ProblemResult],
    *,
    title: str,
    benchmarks: list[str],
    speeds: list[str],
    temperatures: list[float],
    ks: list[int],
    heatmap_problems: int,
    failure_limit: int,
    notes: dict[str, str] | None = None,
    timings: dict[str, float] | None = None,
) -> str:
    """The report as one HTML string."""
    meta = _header_rows(notes or {})
    counts = _problem_counts(results)
    tables = "".join(_score_table(metrics, benchmarks, speeds, temperatures, k, counts) for k in ks)
    decoded = any(r.temperature is not None for r in results)  # a samples file has no decoding to show
    speed_section = (
        [
            "<h2>1x vs 2x steps</h2>",
            _speed_bars(metrics, benchmarks, speeds, ks[0]),
            _speed_cost_table(results),
        ]
        if len(speeds) > 1
        else []
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<table>{meta}</table>" if meta else "",
        "<h2>Scores</h2>",
        tables,
        *(
            [
                *speed_section,
                "<h2>AR-ness</h2>",
                _arness_curves(metrics, speeds),
                "<h2>Decode order</h2>",
                _heatmaps(results, heatmap_problems),
            ]
            if decoded
            else []
        ),
        *(["<h2>Throughput</h2>", _throughput(metrics, timings or {}, speeds)] if timings else []),
        "<h2>Failures</h2>",
        _failures(results, failure_limit),
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )
