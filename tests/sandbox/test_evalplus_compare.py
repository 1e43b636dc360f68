"""The trusted side's EvalPlus 0.3.1 comparison, case by case against what evalplus/eval/__init__.py
does (the agreement test in tests/evaluation runs EvalPlus itself on the whole datasets)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from diffucoder.sandbox.codec import decode, encode
from diffucoder.sandbox.evalplus import TierComparison, is_floats


def _passes(out, exp, *, atol=0.0, entry_point="f", dataset=None, inputs=None) -> bool:
    comparison = TierComparison(
        expected=[exp], inputs=[inputs or []], atol=atol, entry_point=entry_point, dataset=dataset
    )
    # values reach the judge through the codec, as in the service
    return comparison.passes(0, decode(encode(out)))


@pytest.mark.parametrize(
    ("out", "exp", "passes"),
    [
        ([1, 2], [1, 2], True),
        ((1, 2), [1, 2], False),  # a tuple never equals a list
        ((1.0, 2.0), [1.0, 2.0], False),  # not even on the float path (type(out) == type(exp))
        ([1.0, 2.0000001], [1.0, 2.0], True),  # floats: np.allclose, atol raised to 1e-6
        ([1.0], [1.0, 2.0], False),
        (0.1 + 0.2, 0.3, True),
        (3.0, 3, True),  # exact ==
        (3, 3.0000001, False),  # float path needs the same type
        (float("nan"), float("nan"), False),
        ("0.3", 0.3, False),
        (b"ab", "ab", False),
        (np.int64(3), 3, True),  # numpy scalar equal to an int: exact == holds, as in EvalPlus
        (np.float64(0.3000001), 0.3, False),  # close but not the builtin type
        (np.array([1, 2]), [1, 2], False),  # an array's == has no truth value
        (np.array([1]), [1], True),  # ... except with one element
        (collections.namedtuple("P", "x y")(1, 2), (1, 2), True),
        (collections.namedtuple("P", "x y")(1.0, 2.0000001), (1.0, 2.0), False),
        (collections.Counter("aab"), {"a": 2, "b": 1}, True),
    ],
)
def test_plain_comparison(out, exp, passes):
    assert _passes(out, exp) is passes


def test_atol_stays_raised_for_the_rest_of_the_tier():
    comparison = TierComparison(
        expected=[0.5, [1, 2]], inputs=[[], []], atol=0.0, entry_point="f", dataset=None
    )
    assert comparison.passes(0, 0.5)
    # EvalPlus assigned atol = 1e-6 at the float input; a close list now passes the float path
    assert comparison.passes(1, [1, 2.0000001])
    fresh = TierComparison(expected=[[1, 2]], inputs=[[]], atol=0.0, entry_point="f", dataset=None)
    assert not fresh.passes(0, [1, 2.0000001])


def test_special_oracles():
    assert _passes([3, 1], [1, 3], entry_point="similar_elements", dataset="mbpp")
    assert not _passes([3, 1], [1, 3], entry_point="similar_elements", dataset=None)
    # regex tasks: expected is "the reference found a match"; a bool is compared as is
    match = __import__("re").match("a", "a")
    assert _passes(match, True, entry_point="check_str", dataset="mbpp")
    assert _passes(False, False, entry_point="check_str", dataset="mbpp")
    assert not _passes(None, True, entry_point="check_str", dataset="mbpp")
    # Mbpp/581: EvalPlus's own surface area (rounded) counts as right too
    assert _passes(33, 33.0, entry_point="surface_Area", dataset="mbpp", inputs=[3, 4])
    assert _passes(35, 33, entry_point="surface_Area", dataset="mbpp", inputs=[3, 4])  # round(34.6)
    assert not _passes(34, 33, entry_point="surface_Area", dataset="mbpp", inputs=[3, 4])
    # Mbpp/558: digits of numbers of different lengths compared after zero padding
    assert _passes(7, 99, entry_point="digit_distance_nums", dataset="mbpp", inputs=[123, 56])  # 123 vs 056
    assert not _passes(6, 99, entry_point="digit_distance_nums", dataset="mbpp", inputs=[123, 56])


def test_iterators_are_drawn_as_evalplus_consumes_them():
    # a set-compared task consumes the returned iterator (EvalPlus: set(out) == set(exp))
    assert _passes((x for x in [3, 1, 3]), [1, 3], entry_point="similar_elements", dataset="mbpp")
    assert _passes(map(int, "31"), [1, 3], entry_point="similar_elements", dataset="mbpp")
    assert not _passes((x for x in [3]), [1, 3], entry_point="similar_elements", dataset="mbpp")
    # anywhere else an iterator is not its items: out == exp is False, and the types differ
    assert not _passes((x for x in [1, 2]), [1, 2])
    assert not _passes(iter([1.0, 2.0]), [1.0, 2.0])

    def fails_midway():
        yield 1
        raise ValueError("the solution's own error")

    assert not _passes(fails_midway(), [1], entry_point="similar_elements", dataset="mbpp")


def test_find_zero_uses_its_own_poly_and_pristine_inputs():
    xs = [-6, 11, -6, 1]  # roots 1, 2, 3
    for root, ok in ((1.0, True), (3.0, True), (2.5, False), ([1.0], False)):
        assert _passes(root, 1.0, atol=1e-4, entry_point="find_zero", dataset="humaneval", inputs=[xs]) is ok


def test_is_floats_matches_evalplus():
    assert is_floats(1.0) and is_floats([1.0, 2.0]) and is_floats(np.array([1.0]))
    assert not is_floats([]) and not is_floats([1.0, 1]) and not is_floats(np.array([1]))
