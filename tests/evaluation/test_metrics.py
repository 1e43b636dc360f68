"""Aggregation of per-problem results into the stage's metric names."""

import math

import pytest

from diffucoder.evaluation.metrics import ProblemResult, SampleResult, aggregate


def _sample(passed: bool, tokens: int = 10, local=None, glob=None) -> SampleResult:
    return SampleResult(
        completion="c",
        program="p",
        passed=passed,
        verdict="passed" if passed else "failed",
        n_passed=int(passed),
        n_tests=1,
        gen_tokens=tokens,
        arness_local=local or {},
        arness_global=glob or {},
    )


def _results(bench, speed, temp, outcomes):
    return [
        ProblemResult(bench, f"{bench}/{i}", speed, temp, [_sample(p) for p in samples])
        for i, samples in enumerate(outcomes)
    ]


def test_best_temperature_evalplus_and_relative_drop():
    results = (
        _results("humaneval_plus", "1x", 0.2, [[True], [False]])  # 0.5
        + _results("humaneval_plus", "1x", 0.4, [[True], [True]])  # 1.0 (best)
        + _results("humaneval_plus", "2x", 0.2, [[True], [False]])  # 0.5
        + _results("humaneval_plus", "2x", 0.4, [[False], [False]])  # 0.0
        + _results("mbpp_plus", "1x", 0.2, [[True], [False], [False], [False]])  # 0.25
        + _results("mbpp_plus", "1x", 0.4, [[False], [False], [False], [False]])
        + _results("mbpp_plus", "2x", 0.2, [[False]] * 4)
        + _results("mbpp_plus", "2x", 0.4, [[False]] * 4)
    )
    m = aggregate(results, ks=[1], gen_seconds={"1x": 2.0, "2x": 1.0})
    assert m["humaneval_plus_pass_at_1_1x_temp0.2"] == pytest.approx(0.5)
    assert m["humaneval_plus_pass_at_1_1x"] == pytest.approx(1.0)
    assert m["humaneval_plus_best_temp_1x"] == 0.4
    assert m["humaneval_plus_pass_at_1_2x"] == pytest.approx(0.5)
    assert m["evalplus_pass_at_1_1x"] == pytest.approx((1.0 + 0.25) / 2)
    assert m["humaneval_plus_rel_drop_2x"] == pytest.approx(0.5)
    assert m["mbpp_plus_rel_drop_2x"] == pytest.approx(1.0)
    # paired per temperature: at 0.4 HumanEval+ drops 1.0 -> 0.0 on both problems (SE 0); at 0.2
    # nothing changes; MBPP+ at 0.4 never passes at 1x (no relative drop)
    assert m["humaneval_plus_rel_drop_2x_temp0.4"] == pytest.approx(1.0)
    assert m["humaneval_plus_rel_drop_2x_se_temp0.4"] == pytest.approx(0.0)
    assert m["humaneval_plus_rel_drop_2x_temp0.2"] == pytest.approx(0.0)
    assert m["mbpp_plus_rel_drop_2x_temp0.2"] == pytest.approx(1.0)
    assert m["mbpp_plus_rel_drop_2x_se_temp0.2"] == pytest.approx(1.0)  # drops 1, 0, 0, 0: SE 0.25 / 0.25
    assert "mbpp_plus_rel_drop_2x_temp0.4" not in m
    # 12 samples x 10 tokens over 2 s at 1x
    assert m["tokens_per_s_1x"] == pytest.approx(12 * 10 / 2.0)


def test_rel_drop_is_omitted_when_1x_score_is_zero():
    results = _results("mbpp", "1x", 0.2, [[False]]) + _results("mbpp", "2x", 0.2, [[False]])
    m = aggregate(results, ks=[1])
    assert "mbpp_rel_drop_2x" not in m
    assert all(not math.isnan(v) for v in m.values())


def test_pass_at_k_uses_all_samples_and_arness_means():
    r = ProblemResult(
        "tiny_heldout",
        "t/0",
        "1x",
        1.0,
        [_sample(True, local={1: 1.0}, glob={1: 0.5}), _sample(False, local={1: 0.0}, glob={1: 1.0})],
    )
    m = aggregate([r], ks=[1, 2])
    assert m["tiny_heldout_pass_at_1_1x"] == pytest.approx(0.5)
    assert m["tiny_heldout_pass_at_2_1x"] == pytest.approx(1.0)
    assert m["arness_local_at_1_1x"] == pytest.approx(0.5)
    assert m["arness_global_at_1_1x"] == pytest.approx(0.75)
