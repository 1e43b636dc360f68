"""EvalPlus 0.3.1's output comparison, run on the trusted side on values the child reported.

This is ``unsafe_execute`` of evalplus/eval/__init__.py (release 0.3.1) line for line, including
what is easy to miss:

- exact ``out == exp`` first; the float path only when that fails and ``atol != 0``, where it demands
  ``type(out) == type(exp)`` (a tuple never passes for a list, a numpy value never for a builtin),
  equal lengths and ``np.allclose(out, exp, rtol=1e-07, atol=atol)``;
- ``atol`` becomes 1e-6 at the first input whose expected value is float(s) and stays so for the
  rest of the tier (EvalPlus assigns the loop's variable);
- the special oracles, keyed by entry point within a dataset.

The values are decoded by :mod:`diffucoder.sandbox.codec`, so ``==`` here never runs the solution's
code, and the oracles use this module's own helpers and the job's pristine inputs, never names the
solution could have redefined (``poly`` in HumanEval/32) or inputs it could have mutated.

Deliberate differences, each where 0.3.1 is wrong:
- HumanEval/32 ``find_zero``: 0.3.1 ``continue``s after its oracle without recording the input as
  passed, so every sample fails, the canonical solution included; here an input passes when
  ``|poly(xs, out)| <= atol``, as intended.
"""

from __future__ import annotations

import math
from typing import Any, Literal

Dataset = Literal["humaneval", "mbpp"]

# evalplus/eval/_special_oracle.py
MBPP_OUTPUT_NOT_NONE_TASKS = ("check_str", "text_match_three", "text_starta_endb")
MBPP_OUTPUT_SET_EQ_TASKS = (
    "similar_elements",
    "find_char_long",
    "common_in_nested_lists",
    "extract_singly",
    "larg_nnum",
    "intersection_array",
    "find_dissimilar",
    "Diff",
)


def _surface_Area(base_edge, height):  # noqa: N802 - EvalPlus's name (Mbpp/581)
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    base_area = base_edge**2
    lateral_area = 4 * (base_edge * slant_height) / 2
    return round(base_area + lateral_area)


def _digit_distance_nums(num1, num2):  # Mbpp/558
    str_num1, str_num2 = str(num1), str(num2)
    width = max(len(str_num1), len(str_num2))
    str_num1, str_num2 = str_num1.zfill(width), str_num2.zfill(width)
    return sum(abs(int(a) - int(b)) for a, b in zip(str_num1, str_num2, strict=True))


def _poly(xs: list, x: float):  # HumanEval/32
    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


def is_floats(x: Any) -> bool:
    """EvalPlus's ``is_floats``: a float, a non-empty list/tuple of floats, or a float numpy array."""
    if isinstance(x, float):
        return True
    if isinstance(x, list | tuple) and x:
        return all(isinstance(i, float) for i in x)
    np = _numpy_if_loaded(x)
    if np is not None and isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False


def _numpy_if_loaded(x: Any):
    if type(x).__module__ != "numpy":
        return None
    import numpy

    return numpy


class TierComparison:
    """Judges one tier's outputs in order, keeping EvalPlus's per-tier ``atol`` state."""

    def __init__(
        self,
        *,
        expected: list[Any],
        inputs: list[list[Any]],
        atol: float,
        entry_point: str,
        dataset: Dataset | None,
    ):
        self.expected, self.inputs, self.atol = expected, inputs, atol
        self.entry_point, self.dataset = entry_point, dataset

    def passes(self, index: int, out: Any) -> bool:
        """Whether output ``out`` of input ``index`` passes; call in input order."""
        try:
            return self._check(out, self.expected[index], self.inputs[index])
        except BaseException:  # noqa: BLE001 - EvalPlus counts any exception as a failed input
            return False

    def _check(self, out: Any, exp: Any, inp: list[Any]) -> bool:
        ep = self.entry_point
        exact_match = out == exp
        if self.dataset == "mbpp":
            if ep == "are_equivalent":  # Mbpp/164
                exact_match = exact_match or True
            elif ep == "sum_div":  # Mbpp/295
                exact_match = exact_match or out == 0
            elif ep == "surface_Area":  # Mbpp/581
                exact_match = exact_match or abs(out - _surface_Area(*inp)) <= self.atol
            elif ep == "digit_distance_nums":  # Mbpp/558
                exact_match = exact_match or out == _digit_distance_nums(*inp)
            elif ep in MBPP_OUTPUT_SET_EQ_TASKS:
                exact_match = set(out) == set(exp)
            elif ep in MBPP_OUTPUT_NOT_NONE_TASKS:
                exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
        if self.dataset == "humaneval" and ep == "find_zero":
            return abs(_poly(*inp, out)) <= self.atol
        if self.atol == 0 and is_floats(exp):
            self.atol = 1e-6
        if not exact_match and self.atol != 0:
            import numpy as np

            if type(out) != type(exp):  # noqa: E721 - EvalPlus compares the exact types
                return False
            if isinstance(exp, list | tuple) and len(out) != len(exp):
                return False
            return bool(np.allclose(out, exp, rtol=1e-07, atol=self.atol))
        return bool(exact_match)
