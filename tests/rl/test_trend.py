"""The run-level reward trend of stage 4: first vs last quarter of rounds, weighted by groups drawn."""

import pytest

from diffucoder.rl.trainer import quarter_trend


def test_quarters_weight_rounds_by_groups_drawn():
    rewards = [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.5, 1.8]
    drawn = [1.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.0]
    history = [
        {"step": 2.0 * (i + 1), "reward/total/mean": r, "pass_rate": r / 2, "round/groups_drawn": g}
        for i, (r, g) in enumerate(zip(rewards, drawn, strict=True))
    ]
    trend = quarter_trend(history)
    assert trend["reward/total/first_quarter"] == pytest.approx((1.0 * 1 + 2.0 * 3) / 4)
    assert trend["reward/total/last_quarter"] == pytest.approx((1.5 * 2 + 1.8 * 1) / 3)
    assert trend["pass_rate/last_quarter"] == pytest.approx(0.8)
    assert set(trend) == {
        "reward/total/first_quarter",
        "reward/total/last_quarter",
        "pass_rate/first_quarter",
        "pass_rate/last_quarter",
    }


def test_a_single_logged_round_has_no_trend():
    assert quarter_trend([{"reward/total/mean": 1.0, "pass_rate": 0.5}]) == {}
