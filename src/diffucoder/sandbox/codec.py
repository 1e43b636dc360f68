"""Tagged JSON encoding of Python values, and EvalPlus-style output comparison.

Why our own codec: results cross two untrusted/trusted boundaries (sandbox child -> executor ->
HTTP -> client) and must keep the distinctions that decide a verdict: a tuple is not a list,
``1`` is not ``1.0``/``True``, NaN and infinities exist, sets and dict keys can be tuples. JSON drops
all of these and ``repr`` + ``literal_eval`` cannot express ``nan``, ``set()`` or custom reprs
(a returned object whose ``__repr__`` lies). The encoder accepts exact builtin types only, so a
value the trusted side decodes can never run code when it is compared.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 64
MAX_ITEMS = 200_000


class CodecError(ValueError):
    """A value cannot be encoded (unsupported type, too deep, too large) or a payload is malformed."""


def encode(value: Any) -> Any:
    """Python value -> JSON-safe tagged tree. Raises CodecError for anything not plain data."""
    budget = [MAX_ITEMS]
    return _encode(value, 0, budget)


def _encode(value: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise CodecError("value too deep or too large to encode")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return {"int": str(value)} if abs(value) >= 2**53 else {"i": value}
    if kind is float:
        return {"f": repr(value)} if not math.isfinite(value) else {"f": value}
    if kind is complex:
        return {"c": [repr(value.real), repr(value.imag)]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind in (list, tuple, set, frozenset):
        items = [_encode(v, depth + 1, budget) for v in value]
        tag = {list: "l", tuple: "t", set: "s", frozenset: "fs"}[kind]
        return {tag: items}
    if kind is dict:
        return {
            "d": [[_encode(k, depth + 1, budget), _encode(v, depth + 1, budget)] for k, v in value.items()]
        }
    # numpy scalars/arrays are common in model code; keep their plain-Python meaning
    module = getattr(kind, "__module__", "")
    if module == "numpy" and hasattr(value, "tolist"):
        return _encode(value.tolist(), depth + 1, budget)
    raise CodecError(f"cannot encode a value of type {kind.__module__}.{kind.__qualname__}")


def decode(tree: Any) -> Any:
    """Inverse of :func:`encode`; validates shape so a forged payload fails loudly, never executes."""
    return _decode(tree, 0)


def _decode(tree: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CodecError("payload too deep")
    if tree is None or isinstance(tree, bool | str):
        return tree
    if not isinstance(tree, dict) or len(tree) != 1:
        raise CodecError(f"malformed encoded value: {str(tree)[:80]}")
    ((tag, raw),) = tree.items()
    try:
        if tag == "i" and type(raw) is int:
            return raw
        if tag == "int":
            return int(raw)
        if tag == "f":
            return float(raw)
        if tag == "c":
            return complex(float(raw[0]), float(raw[1]))
        if tag == "b":
            return bytes.fromhex(raw)
        if tag in ("l", "t", "s", "fs") and isinstance(raw, list):
            items = [_decode(v, depth + 1) for v in raw]
            return {"l": list, "t": tuple, "s": set, "fs": frozenset}[tag](items)
        if tag == "d" and isinstance(raw, list):
            return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in raw}
    except (TypeError, ValueError) as exc:
        raise CodecError(f"malformed encoded value for tag {tag!r}: {exc}") from None
    raise CodecError(f"unknown tag {tag!r} in encoded value")


def _is_floats(x: Any) -> bool:
    """EvalPlus's rule: a float, or a non-empty list/tuple whose items are all floats."""
    if isinstance(x, float):
        return True
    if isinstance(x, list | tuple) and x:
        return all(isinstance(i, float) for i in x)
    return False


def outputs_match(out: Any, expected: Any, atol: float = 0.0) -> bool:
    """EvalPlus semantics: exact ``==`` first (so a tuple never equals a list); when the expected
    value is float(s), fall back to ``np.allclose(out, expected, rtol=1e-7, atol)`` with atol raised
    to 1e-6 when it is 0 (evalplus/eval/__init__.py does the same)."""
    try:
        if out == expected:
            return True
    except Exception:
        return False
    if not _is_floats(expected):
        return False
    if atol == 0:
        atol = 1e-6
    outs = out if isinstance(out, list | tuple) else [out]
    exps = expected if isinstance(expected, list | tuple) else [expected]
    if isinstance(out, list | tuple) != isinstance(expected, list | tuple) or len(outs) != len(exps):
        return False
    for o, e in zip(outs, exps, strict=True):
        if type(o) not in (int, float) or isinstance(o, bool):
            return False
        if not abs(o - e) <= atol + 1e-7 * abs(e) and o != e:  # NaN never matches (np.allclose default)
            return False
    return True
