"""Paired difference of two evaluations' per-problem pass rates (the "+- paired SE" in BENCHMARKS.md).

Both directories are `diffucoder evaluate --out` outputs on the same problems; each problem's pass rate
(n_correct / n at each temperature) is compared between A and B, so problem difficulty cancels and the
standard error is that of the per-problem differences.

    .venv/bin/python benchmarks/paired_eval_diff.py EVAL_DIR_A EVAL_DIR_B
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def pass_rates(eval_dir: str) -> dict[tuple[str, float], float]:
    rows = (json.loads(line) for line in Path(eval_dir, "per_problem.jsonl").read_text().splitlines())
    return {(r["task_id"], r["temperature"]): r["n_correct"] / r["n"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    a, b = pass_rates(args.a), pass_rates(args.b)
    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        raise SystemExit(f"{args.a} and {args.b} share {len(keys)} (problem, temperature) rows; need >= 2")
    diffs = [b[k] - a[k] for k in keys]
    mean = sum(diffs) / len(diffs)
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
    print(
        json.dumps(
            {
                "problems": len(keys),
                "a": sum(a[k] for k in keys) / len(keys),
                "b": sum(b[k] for k in keys) / len(keys),
                "diff": mean,
                "paired_se": se,
                "up": sum(d > 0 for d in diffs),
                "down": sum(d < 0 for d in diffs),
            }
        )
    )


if __name__ == "__main__":
    main()
