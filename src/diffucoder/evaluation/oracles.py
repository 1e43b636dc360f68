"""EvalPlus special oracles, expressed as wrapper functions appended to the program under test.

Most io problems compare the candidate's output with the canonical solution's output (``==``, or
``atol`` for floats), which the sandbox's io jobs do. A few problems have several correct answers, and
EvalPlus judges them with a custom check instead (evalplus ``eval/__init__.py``):

- HumanEval/32 ``find_zero``: any x with |poly(xs, x)| <= atol is a root;
- MBPP+ tasks whose answer is a collection in arbitrary order: compare as sets;
- MBPP+ regex tasks whose reference returns a ``re.Match`` (or None): only "found or not" matters.

Rather than teach the sandbox benchmark-specific rules, we call the entry point through a wrapper
that maps its output to a canonical value (the set as a sorted list, the root check as a bool,
match-or-None as a bool). The reference program runs through the *reference* wrapper to produce the
expected values, so ordinary equality then applies. Inputs are deep-copied before each call so a
function that mutates its arguments cannot change what the checks see.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffucoder.evaluation.benchmarks import Problem

WRAPPER_NAME = "_diffucoder_oracle_entry"

# MBPP+ entry points whose outputs are unordered collections (EvalPlus compares set(out) == set(exp)).
SET_EQUAL_ENTRY_POINTS = frozenset(
    {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
     "intersection_array", "find_dissimilar", "Diff"}
)
# MBPP+ entry points whose reference returns a re.Match or None: only "is there a match" is checked.
MATCH_OR_NONE_ENTRY_POINTS = frozenset({"check_str", "text_match_three", "text_starta_endb"})


@dataclass(frozen=True)
class OracleCode:
    """Wrapper source for the reference run and for candidate runs, and the name to call."""

    reference: str
    candidate: str
    entry_point: str


def _wrapper(fn: str, body: str) -> str:
    """Source of a wrapper that calls ``fn`` on a deep copy of the inputs, then runs ``body``."""
    return (
        f"\n\ndef {WRAPPER_NAME}(*args):\n"
        "    import copy as _copy\n"
        f"    _out = {fn}(*_copy.deepcopy(args))\n"
        f"{body}"
    )


def oracle_for(problem: Problem) -> OracleCode | None:
    """The special oracle of a problem, or None when plain output equality applies."""
    ep = problem.entry_point
    if problem.benchmark.startswith("humaneval") and ep == "find_zero":
        # The prompt (part of every HumanEval program) defines poly(xs, x).
        body = f"    return abs(poly(args[0], _out)) <= {problem.atol!r}\n"
        code = _wrapper(ep, body)
        return OracleCode(reference=code, candidate=code, entry_point=WRAPPER_NAME)
    if problem.benchmark.startswith("mbpp") and ep in SET_EQUAL_ENTRY_POINTS:
        code = _wrapper(ep, "    return sorted(set(_out), key=repr)\n")
        return OracleCode(reference=code, candidate=code, entry_point=WRAPPER_NAME)
    if problem.benchmark.startswith("mbpp") and ep in MATCH_OR_NONE_ENTRY_POINTS:
        # EvalPlus: the expected value is "reference found a match"; a candidate returning a bool is
        # compared as is, anything else by whether it is not None.
        ref = _wrapper(ep, "    return _out is not None\n")
        cand = _wrapper(ep, "    return _out if isinstance(_out, bool) else _out is not None\n")
        return OracleCode(reference=ref, candidate=cand, entry_point=WRAPPER_NAME)
    return None
