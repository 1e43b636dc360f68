"""Paired change between two evaluations: per-problem differences, their SE, and the rows compared."""

from __future__ import annotations

import json

import pytest

from diffucoder.evaluation.paired import paired_difference, pass_rates


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
