"""Paired difference of evaluations' per-problem pass rates (the "+- paired SE" in BENCHMARKS.md).

All directories are `diffucoder evaluate --out` outputs on the same problems; each problem's pass rate
(n_correct / n at each grid point) is compared between the baseline A and each run B, so problem
difficulty cancels and the standard error is that of the per-problem differences
(:mod:`diffucoder.evaluation.paired`). With several runs (e.g. one GRPO run per seed) it also prints
their mean change with the SE across runs, the measure of a recipe rather than of one run.

    .venv/bin/python benchmarks/paired_eval_diff.py EVAL_DIR_A EVAL_DIR_B [EVAL_DIR_B2 ...] [--benchmark tiny_heldout]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from diffucoder.evaluation.paired import paired_difference, pass_rates, run_spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="baseline evaluation directory")
    parser.add_argument("b", nargs="+", help="evaluation directories compared with the baseline")
    parser.add_argument("--benchmark", default="", help="compare this benchmark's rows only")
    args = parser.parse_args()

    def rates(directory: str):
        return pass_rates(Path(directory, "per_problem.jsonl").read_text(), benchmark=args.benchmark)

    before = rates(args.a)
    changes = []
    for directory in args.b:
        try:
            changes.append(paired_difference(before, rates(directory)))
        except ValueError as exc:
            raise SystemExit(f"{args.a} vs {directory}: {exc}") from None
        row = asdict(changes[-1])
        print(json.dumps({"run": directory, **row} if len(args.b) > 1 else row))
    if len(changes) > 1:
        print(json.dumps({"runs_mean": asdict(run_spread(changes))}))


if __name__ == "__main__":
    main()
