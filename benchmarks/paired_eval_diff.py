"""Paired difference of two evaluations' per-problem pass rates (the "+- paired SE" in BENCHMARKS.md).

Both directories are `diffucoder evaluate --out` outputs on the same problems; each problem's pass rate
(n_correct / n at each grid point) is compared between A and B, so problem difficulty cancels and the
standard error is that of the per-problem differences (:mod:`diffucoder.evaluation.paired`).

    .venv/bin/python benchmarks/paired_eval_diff.py EVAL_DIR_A EVAL_DIR_B [--benchmark tiny_heldout]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from diffucoder.evaluation.paired import paired_difference, pass_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--benchmark", default="", help="compare this benchmark's rows only")
    args = parser.parse_args()
    a, b = (
        pass_rates(Path(d, "per_problem.jsonl").read_text(), benchmark=args.benchmark)
        for d in (args.a, args.b)
    )
    try:
        result = paired_difference(a, b)
    except ValueError as exc:
        raise SystemExit(f"{args.a} vs {args.b}: {exc}") from None
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
