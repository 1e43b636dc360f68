"""Paired change between two evaluations: per-problem differences, their SE, and the rows compared."""

from __future__ import annotations

import json

import pytest

from diffucoder.evaluation.paired import (
    paired_difference,
    pass_rates,
    run_spread,
    speed_costs,
    step_halving_drops,
)


def _jsonl(rows: list[tuple[str, str, str, int, int]]) -> str:
    keys = ("benchmark", "task_id", "speed", "n", "n_correct")
    return "".join(json.dumps({**dict(zip(keys, r, strict=True)), "temperature": 0.2}) + "\n" for r in rows)


def test_paired_difference_over_shared_rows():
    before = pass_rates(_jsonl([("b", "a", "1x", 2, 0), ("b", "c", "1x", 2, 1), ("b", "d", "1x", 2, 2)]))
    after = pass_rates(
        _jsonl(
            [("b", "a", "1x", 2, 2), ("b", "c", "1x", 2, 1), ("b", "d", "1x", 2, 1), ("b", "e", "1x", 1, 1)]
        )
    )
    diff = paired_difference(before, after)
    # differences +1, 0, -0.5 (task e is in one evaluation only): mean 1/6, sample sd sqrt(7)/sqrt(12)
    assert (diff.problems, diff.up, diff.down) == (3, 1, 1)
    assert diff.diff == pytest.approx(1 / 6) and diff.se == pytest.approx((7 / 12) ** 0.5 / 3**0.5)
    assert diff.before == pytest.approx(0.5) and diff.after == pytest.approx(1 / 6 + 0.5)
    assert diff.describe() == "+0.167 +- 0.441 paired SE, 3 tasks: 1 up, 1 down"


def test_rows_are_filtered_by_benchmark_and_speed():
    text = _jsonl([("tiny", "a", "1x", 1, 1), ("tiny", "a", "2x", 1, 0), ("humaneval", "a", "1x", 1, 0)])
    assert pass_rates(text, benchmark="tiny", speed="1x") == {("tiny", "a", "1x", 0.2): 1.0}
    assert len(pass_rates(text)) == 3


def test_fewer_than_two_shared_rows_is_named():
    one = pass_rates(_jsonl([("b", "a", "1x", 1, 1)]))
    with pytest.raises(ValueError, match="share 1 .* need >= 2"):
        paired_difference(one, one)


def test_speed_cost_pairs_1x_with_2x_per_benchmark_and_temperature():
    text = _jsonl(
        [("tiny", "a", "1x", 1, 1), ("tiny", "b", "1x", 1, 1), ("tiny", "c", "1x", 1, 0)]
        + [("tiny", "a", "2x", 1, 1), ("tiny", "b", "2x", 1, 0), ("tiny", "c", "2x", 1, 0)]
        + [("other", "a", "1x", 1, 1), ("other", "b", "1x", 1, 1)]  # no 2x: no cost
    )
    costs = speed_costs(pass_rates(text))
    assert list(costs) == [("tiny", 0.2)]
    cost = costs["tiny", 0.2]
    # drops 0, 1, 0: mean 1/3, sample variance 1/3, SE 1/3; 1x pass rate 2/3
    assert cost.pair.diff == pytest.approx(1 / 3) and cost.pair.se == pytest.approx(1 / 3)
    assert cost.relative == pytest.approx(0.5) and cost.relative_se == pytest.approx(0.5)
    assert cost.describe() == (
        "relative drop +0.500 +- 0.500 (0.667 -> 0.333; drop +0.333 +- 0.333 paired SE, "
        "3 tasks: 1 worse at 2x, 0 better)"
    )


def test_relative_drop_is_undefined_when_nothing_passes_at_1x():
    text = _jsonl(
        [("t", "a", "1x", 1, 0), ("t", "b", "1x", 1, 0), ("t", "a", "2x", 1, 0), ("t", "b", "2x", 1, 0)]
    )
    cost = speed_costs(pass_rates(text))["t", 0.2]
    assert cost.relative is None and "undefined" in cost.describe()


def test_two_stages_drops_pair_task_by_task():
    """Finding (d): the later stage loses less from halving the steps on the same tasks."""
    before = pass_rates(
        _jsonl(
            [("t", i, "1x", 1, 1) for i in "abc"]
            + [("t", "a", "2x", 1, 0), ("t", "b", "2x", 1, 0), ("t", "c", "2x", 1, 1)]
        )
    )
    after = pass_rates(_jsonl([("t", i, s, 1, 1) for i in "abc" for s in ("1x", "2x")]))
    assert step_halving_drops(before) == {("t", "a", 0.2): 1.0, ("t", "b", 0.2): 1.0, ("t", "c", 0.2): 0.0}
    change = paired_difference(step_halving_drops(before), step_halving_drops(after))
    assert change.diff == pytest.approx(-2 / 3) and (change.up, change.down) == (0, 2)


def test_run_spread_is_the_mean_change_with_its_se_across_runs():
    before = pass_rates(_jsonl([("b", "a", "1x", 1, 0), ("b", "c", "1x", 1, 1)]))
    runs = [
        paired_difference(before, pass_rates(_jsonl([("b", "a", "1x", 1, a), ("b", "c", "1x", 1, c)])))
        for a, c in ((1, 1), (0, 0), (1, 0))
    ]
    # per-run changes +0.5, -0.5, 0: mean 0, sample sd 0.5, SE 0.5 / sqrt(3)
    spread = run_spread(runs)
    assert spread.runs == 3 and spread.mean == pytest.approx(0.0)
    assert spread.se == pytest.approx(0.5 / 3**0.5)
    assert spread.describe() == "+0.000 +- 0.289 over 3 runs"
    assert run_spread([0.5, -0.5, 0.0]) == spread  # plain numbers, e.g. relative drops
    with pytest.raises(ValueError, match="1 run.*needs >= 2"):
        run_spread(runs[:1])
