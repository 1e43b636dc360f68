"""The change between two evaluations of the same problems, with its paired standard error.

Two models evaluated on the same problems differ by much less noise than two independent samples
would: each problem's difficulty cancels in its own difference. So a change is reported as the mean
of the per-problem differences of pass rates (``n_correct / n``) with the standard error of that
mean, plus how many problems went up and down. The run summary prints it for every stage change
of held-out pass@1; ``benchmarks/paired_eval_diff.py`` prints it for any two evaluation outputs.

The same pairing gives what halving the decoding steps costs (``speed_costs``: 1x vs 2x of one
evaluation, problem by problem) and whether a later stage pays less for it (``paired_difference`` of
two stages' ``step_halving_drops``): the paper's finding (d), that the drop is smaller after
coupled-GRPO (arXiv 2506.20639 §5).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping
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


def _mean_and_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample SD / sqrt(n)) of >= 2 values."""
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


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


def paired_difference(before: Mapping[Hashable, float], after: Mapping[Hashable, float]) -> PairedDifference:
    """``after - before`` over the rows both evaluations share.

    Raises:
        ValueError: fewer than 2 shared rows (no standard error), naming how many there are.
    """
    keys = sorted(set(before) & set(after))
    if len(keys) < 2:
        raise ValueError(f"the two evaluations share {len(keys)} (problem, grid point) rows; need >= 2")
    diffs = [after[k] - before[k] for k in keys]
    mean, se = _mean_and_se(diffs)
    return PairedDifference(
        problems=len(keys),
        before=sum(before[k] for k in keys) / len(keys),
        after=sum(after[k] for k in keys) / len(keys),
        diff=mean,
        se=se,
        up=sum(d > 0 for d in diffs),
        down=sum(d < 0 for d in diffs),
    )


@dataclass(frozen=True)
class RunSpread:
    """Several runs' changes against one baseline: their mean and the standard error across runs.

    One run's paired SE covers the evaluation's noise only; which problems a short RL run happened to
    draw moves its change by as much again, so a recipe is judged by the mean over seeds, whose SE
    comes from the spread of the runs' changes.
    """

    runs: int
    mean: float
    se: float

    def describe(self) -> str:
        """``+0.012 +- 0.015 over 4 runs``"""
        return f"{self.mean:+.3f} +- {self.se:.3f} over {self.runs} runs"


def run_spread(changes: list[PairedDifference] | list[float]) -> RunSpread:
    """Mean of several runs' changes (their ``diff``, or plain numbers such as relative drops) with
    its SE across runs.

    Raises:
        ValueError: fewer than 2 runs (no spread to measure).
    """
    if len(changes) < 2:
        raise ValueError(f"{len(changes)} run(s): the spread across runs needs >= 2")
    mean, se = _mean_and_se([c.diff if isinstance(c, PairedDifference) else c for c in changes])
    return RunSpread(runs=len(changes), mean=mean, se=se)


@dataclass(frozen=True)
class SpeedCost:
    """Pass rate at 1x (steps = length) and 2x (half the steps) on the same problems, and the drop.

    The relative drop's SE is the drop's paired SE over the 1x pass rate (taken as exact), so it
    is None, like the relative drop, when nothing passes at 1x.
    """

    pair: PairedDifference  # before = 2x, after = 1x, so diff = 1x - 2x = the drop

    @property
    def relative(self) -> float | None:
        return self.pair.diff / self.pair.after if self.pair.after else None

    @property
    def relative_se(self) -> float | None:
        return self.pair.se / self.pair.after if self.pair.after else None

    def describe(self) -> str:
        """``relative drop +0.057 +- 0.050 (0.530 -> 0.500; drop +0.030 +- 0.026 paired SE, ...)``"""
        p = self.pair
        relative = (
            f"relative drop {self.relative:+.3f} +- {self.relative_se:.3f}"
            if self.relative is not None
            else "relative drop undefined (nothing passes at 1x)"
        )
        return (
            f"{relative} ({p.after:.3f} -> {p.before:.3f}; drop {p.diff:+.3f} +- {p.se:.3f} paired SE, "
            f"{p.problems} tasks: {p.up} worse at 2x, {p.down} better)"
        )


def _by_point(rates: Mapping[Key, float]) -> dict[tuple[str, float], dict[str, dict[str, float]]]:
    """rates regrouped as {(benchmark, temperature): {speed: {task_id: rate}}}."""
    grouped: dict[tuple[str, float], dict[str, dict[str, float]]] = {}
    for (benchmark, task_id, speed, temperature), rate in rates.items():
        grouped.setdefault((benchmark, temperature), {}).setdefault(speed, {})[task_id] = rate
    return grouped


def speed_costs(rates: Mapping[Key, float]) -> dict[tuple[str, float], SpeedCost]:
    """The 1x -> 2x cost per (benchmark, temperature) that has both speeds on >= 2 shared problems."""
    costs = {}
    for point, speeds in _by_point(rates).items():
        one, two = speeds.get("1x", {}), speeds.get("2x", {})
        if len(one.keys() & two.keys()) >= 2:
            costs[point] = SpeedCost(paired_difference(two, one))
    return costs


def step_halving_drops(rates: Mapping[Key, float]) -> dict[tuple[str, str, float], float]:
    """Per (benchmark, task_id, temperature) with both speeds: pass rate at 1x minus at 2x.

    Pair two evaluations' drops with :func:`paired_difference` to see whether one pays less for
    halving the steps than the other on the same problems.
    """
    return {
        (benchmark, task_id, temperature): rate - speeds["2x"][task_id]
        for (benchmark, temperature), speeds in _by_point(rates).items()
        for task_id, rate in speeds.get("1x", {}).items()
        if task_id in speeds.get("2x", {})
    }
