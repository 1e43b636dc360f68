"""The entry wrapper of io jobs: EvalPlus special oracles and outputs the sandbox can carry.

Every io problem (HumanEval+, MBPP+) is called through a wrapper appended to the program, for the
reference and the candidate alike, so the sandbox's plain EvalPlus comparison (``==``, floats with
``atol``) then decides. The wrapper does three things:

1. Deep-copies the inputs, so a function that mutates its arguments cannot change what is checked.
2. Applies the EvalPlus special oracle where a problem has several correct answers
   (evalplus ``eval/__init__.py``):
   - HumanEval/32 ``find_zero``: any x with |poly(xs, x)| <= atol is a root;
   - MBPP+ tasks whose answer is an unordered collection: compared as sets;
   - MBPP+ regex tasks whose reference returns a ``re.Match`` or None: only "found or not" counts.
3. Canonicalises the output into values the sandbox codec can carry across processes (EvalPlus
   compares in-process and has no such limit): dict subclasses such as ``Counter`` become dicts
   (Python's ``==`` already treats them so); integers beyond Python's 4300-digit ``str`` limit
   become a tagged hex string (HumanEval/83, /139); outputs too large or too deep for the codec
   (a million-element list in HumanEval/100, 1.6M tuples in Mbpp/255) become a tagged SHA-256 of
   the reprs of their items, which compares exactly (no float tolerance for such outputs).
"""

from __future__ import annotations

from diffucoder.evaluation.benchmarks import Problem

ENTRY_NAME = "_diffucoder_entry"

# MBPP+ entry points whose outputs are unordered collections (EvalPlus compares set(out) == set(exp)).
SET_EQUAL_ENTRY_POINTS = frozenset(
    {
        "similar_elements",
        "find_char_long",
        "common_in_nested_lists",
        "extract_singly",
        "larg_nnum",
        "intersection_array",
        "find_dissimilar",
        "Diff",
    }
)
# MBPP+ entry points whose reference returns a re.Match or None: only "is there a match" is checked.
MATCH_OR_NONE_ENTRY_POINTS = frozenset({"check_str", "text_match_three", "text_starta_endb"})

# Kept below the sandbox codec's limits (diffucoder.sandbox.codec: depth 64, 200k items).
_CANON_SOURCE = """

def _diffucoder_canon(value, _max_items=150_000, _max_depth=48, _max_bits=14_000):
    import hashlib
    count = 0

    def convert(v, depth):
        nonlocal count
        count += 1
        if count > _max_items or depth > _max_depth:
            raise OverflowError
        kind = type(v)
        if kind is int and v.bit_length() > _max_bits:
            return ("__diffucoder_bigint__", hex(v))
        if isinstance(v, dict):
            return {convert(k, depth + 1): convert(x, depth + 1) for k, x in v.items()}
        if kind in (list, tuple, set, frozenset):
            return kind(convert(x, depth + 1) for x in v)
        return v

    try:
        return convert(value, 0)
    except OverflowError:
        pass
    # Too large or deep for the codec: a digest of the reprs of the top-level items, so no giant
    # string is built (Mbpp/255 returns 1.6M tuples); Python's int-to-str limit is lifted meanwhile.
    import sys

    digest = hashlib.sha256(type(value).__name__.encode())
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        items = value if type(value) in (list, tuple) else [value]
        for item in items:
            text = repr(item).encode()
            digest.update(b"%d:" % len(text) + text)
    finally:
        sys.set_int_max_str_digits(limit)
    return ("__diffucoder_digest__", digest.hexdigest())
"""


def _oracle_body(problem: Problem, reference: bool) -> str:
    """Lines that map ``_out`` to the value compared (empty when plain equality applies)."""
    ep = problem.entry_point
    if problem.benchmark.startswith("humaneval") and ep == "find_zero":
        # The prompt (part of every HumanEval program) defines poly(xs, x).
        return f"    _out = abs(poly(args[0], _out)) <= {problem.atol!r}\n"
    if problem.benchmark == "mbpp_plus" and ep in SET_EQUAL_ENTRY_POINTS:
        return "    _out = sorted(set(_out), key=repr)\n"
    if problem.benchmark == "mbpp_plus" and ep in MATCH_OR_NONE_ENTRY_POINTS:
        # EvalPlus: expected = "reference found a match"; a candidate's bool is compared as is,
        # anything else by whether it is not None.
        if reference:
            return "    _out = _out is not None\n"
        return "    _out = _out if isinstance(_out, bool) else _out is not None\n"
    return ""


def entry_wrapper(problem: Problem, reference: bool) -> str:
    """Source appended to an io program; the sandbox then calls :data:`ENTRY_NAME`."""
    return (
        _CANON_SOURCE
        + f"\n\ndef {ENTRY_NAME}(*args):\n"
        + "    import copy as _copy\n"
        + f"    _out = {problem.entry_point}(*_copy.deepcopy(args))\n"
        + _oracle_body(problem, reference)
        + "    return _diffucoder_canon(_out)\n"
    )
