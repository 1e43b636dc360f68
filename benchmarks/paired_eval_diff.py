"""Paired difference of evaluations' per-problem pass rates (the "+- paired SE" in BENCHMARKS.md).

All directories are `diffucoder evaluate --out` outputs on the same problems; each problem's pass rate
(n_correct / n at each grid point) is compared between the baseline A and each run B, so problem
difficulty cancels and the standard error is that of the per-problem differences
(:mod:`diffucoder.evaluation.paired`). With several runs (e.g. one GRPO run per seed) it also prints
their mean change with the SE across runs, the measure of a recipe rather than of one run.

With ``--step-halving`` (evaluations at ``speeds: [1x, 2x]``) it compares what halving the decoding
steps costs instead, the paper's finding (d) (arXiv 2506.20639 §5): per evaluation the drop from 1x
to 2x, absolute and relative, with its paired SE over problems; per run B its change of that drop
against A problem by problem and its change of pass@1 at 1x; over several runs the mean changes with
their SE across runs.

    .venv/bin/python benchmarks/paired_eval_diff.py EVAL_DIR_A EVAL_DIR_B [EVAL_DIR_B2 ...] \
        [--benchmark tiny_heldout] [--step-halving]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from diffucoder.evaluation.paired import (
    Key,
    RunSpread,
    SpeedCost,
    paired_difference,
    pass_rates,
    run_spread,
    speed_costs,
    step_halving_drops,
)


def compare_pass_rates(a: str, bs: list[str], rates: Mapping[str, Mapping[Key, float]]) -> list[dict]:
    """Each run's paired change of pass rates against A, and with several runs their mean."""
    changes = [paired_difference(rates[a], rates[b]) for b in bs]
    rows = [{"run": b, **asdict(c)} if len(bs) > 1 else asdict(c) for b, c in zip(bs, changes, strict=True)]
    if len(changes) > 1:
        rows.append({"runs_mean": asdict(run_spread(changes))})
    return rows


def _at_point(values: Mapping[tuple[str, str, float], float], bench: str, temp: float) -> dict[str, float]:
    """{task_id: value} of one (benchmark, temperature) from rows keyed (benchmark, task_id, temperature)."""
    return {task: v for (b, task, t), v in values.items() if (b, t) == (bench, temp)}


def _one_x(rates: Mapping[Key, float], bench: str, temp: float) -> dict[str, float]:
    """{task_id: pass rate at 1x} of one (benchmark, temperature)."""
    return {task: r for (b, task, s, t), r in rates.items() if (b, s, t) == (bench, "1x", temp)}


def _drop_fields(cost: SpeedCost) -> dict[str, float | int | None]:
    """One evaluation's 1x -> 2x drop as JSON fields."""
    p = cost.pair  # before = 2x, after = 1x
    return {
        "problems": p.problems,
        "pass_1x": p.after,
        "pass_2x": p.before,
        "drop": p.diff,
        "drop_se": p.se,
        "relative_drop": cost.relative,
        "relative_drop_se": cost.relative_se,
        "worse_at_2x": p.up,
        "better_at_2x": p.down,
    }


def _with_baseline_se(spread: RunSpread, baseline_se: float) -> dict[str, float]:
    """The spread's fields and ``se_with_baseline``: its SE and the baseline's in quadrature."""
    return {**asdict(spread), "se_with_baseline": math.hypot(spread.se, baseline_se)}


def compare_step_halving(a: str, bs: list[str], rates: Mapping[str, Mapping[Key, float]]) -> list[dict]:
    """Rows per (benchmark, temperature) with 1x and 2x in A: every evaluation's drop, each run's
    change of it and of pass@1 at 1x, and with several runs the mean changes.

    Every run is compared with the same evaluation of A, so A's own noise moves all runs' changes
    alike and is absent from their spread: the mean changes of the drop (absolute and relative) also
    carry ``se_with_baseline``, the SE across runs and A's paired SE of that drop in quadrature (an
    upper bound on the shared part, since the paired SE also counts how the problems' drops differ).
    """
    evals = [a, *bs]
    costs = {d: speed_costs(rates[d]) for d in evals}
    if not costs[a]:
        raise ValueError(f"{a} has no (benchmark, temperature) evaluated at both 1x and 2x")
    drops = {d: step_halving_drops(rates[d]) for d in evals}
    rows: list[dict] = []
    for bench, temp in sorted(costs[a]):
        point = {"benchmark": bench, "temperature": temp}
        for d in evals:
            cost = costs[d].get((bench, temp))
            if cost is None:
                raise ValueError(f"{d} has no 1x and 2x rows for {bench} at T {temp:g}")
            rows.append({"eval": d, **point, **_drop_fields(cost)})

        drop_changes, pass_changes, relative_changes = [], [], []
        for b in bs:
            drop_changes.append(
                paired_difference(_at_point(drops[a], bench, temp), _at_point(drops[b], bench, temp))
            )
            pass_changes.append(
                paired_difference(_one_x(rates[a], bench, temp), _one_x(rates[b], bench, temp))
            )
            rel_a, rel_b = costs[a][bench, temp].relative, costs[b][bench, temp].relative
            relative_changes.append(None if rel_a is None or rel_b is None else rel_b - rel_a)
            rows.append(
                {
                    "run": b,
                    **point,
                    "drop_change": asdict(drop_changes[-1]),
                    "relative_drop_change": relative_changes[-1],
                    "pass_1x_change": asdict(pass_changes[-1]),
                }
            )
        if len(bs) > 1:
            base = costs[a][bench, temp]
            row = {
                "runs_mean": len(bs),
                **point,
                "drop_change": _with_baseline_se(run_spread(drop_changes), base.pair.se),
                "pass_1x_change": asdict(run_spread(pass_changes)),
            }
            relative = [c for c in relative_changes if c is not None]
            if len(relative) == len(bs) and base.relative_se is not None:
                row["relative_drop_change"] = _with_baseline_se(run_spread(relative), base.relative_se)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="baseline evaluation directory")
    parser.add_argument("b", nargs="+", help="evaluation directories compared with the baseline")
    parser.add_argument("--benchmark", default="", help="compare this benchmark's rows only")
    parser.add_argument(
        "--step-halving", action="store_true", help="compare the pass@1 drop from 1x to 2x (finding (d))"
    )
    args = parser.parse_args()
    rates = {
        d: pass_rates(Path(d, "per_problem.jsonl").read_text(), benchmark=args.benchmark)
        for d in [args.a, *args.b]
    }
    compare = compare_step_halving if args.step_halving else compare_pass_rates
    try:
        rows = compare(args.a, args.b, rates)
    except ValueError as exc:
        raise SystemExit(f"{args.a} vs {', '.join(args.b)}: {exc}") from None
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
