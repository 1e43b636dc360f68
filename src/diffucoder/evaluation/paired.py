"""The change between two evaluations of the same problems, with its paired standard error.

Two models evaluated on the same problems differ by much less noise than two independent samples
would: each problem's difficulty cancels in its own difference. So a change is reported as the mean
of the per-problem differences of pass rates (``n_correct / n``) with the standard error of that
mean, plus how many problems went up and down. The run summary prints it for every stage change
of held-out pass@1; ``benchmarks/paired_eval_diff.py`` prints it for any two evaluation outputs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

Key = tuple[str, str, str, float]  # (benchmark, task_id, speed, temperature)


def pass_rates(per_problem_jsonl: str, *, benchmark: str = "", speed: str = "") -> dict[Key, float]:
    """Each row's pass rate from a ``per_problem.jsonl`` text, optionally one benchmark / speed only."""
    rates = {}
    for line in per_problem_jsonl.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if (benchmark and row["benchmark"] != benchmark) or (speed and row["speed"] != speed):
            continue
        key = (row["benchmark"], row["task_id"], row["speed"], float(row["temperature"]))
        rates[key] = row["n_correct"] / row["n"]
    return rates


@dataclass(frozen=True)
class PairedDifference:
    problems: int
    before: float
    after: float
    diff: float
    se: float
    up: int
    down: int

    def describe(self) -> str:
        """``+0.050 +- 0.021 paired SE, 60 tasks: 5 up, 2 down``"""
        return (
            f"{self.diff:+.3f} +- {self.se:.3f} paired SE, {self.problems} tasks: "
            f"{self.up} up, {self.down} down"
        )


def paired_difference(before: dict[Key, float], after: dict[Key, float]) -> PairedDifference:
    """``after - before`` over the rows both evaluations share.

    Raises:
        ValueError: fewer than 2 shared rows (no standard error), naming how many there are.
    """
    keys = sorted(set(before) & set(after))
    if len(keys) < 2:
        raise ValueError(f"the two evaluations share {len(keys)} (problem, grid point) rows; need >= 2")
    diffs = [after[k] - before[k] for k in keys]
    mean = sum(diffs) / len(diffs)
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return PairedDifference(
        problems=len(keys),
        before=sum(before[k] for k in keys) / len(keys),
        after=sum(after[k] for k in keys) / len(keys),
        diff=mean,
        se=math.sqrt(variance / len(diffs)),
        up=sum(d > 0 for d in diffs),
        down=sum(d < 0 for d in diffs),
    )
