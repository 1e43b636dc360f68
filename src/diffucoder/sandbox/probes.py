"""Turn test cases into probes: what the sandbox child evaluates, and what only the judge knows.

A test like ``assert add(1, 2) == 3`` is split into the expression the child evaluates
(``add(1, 2)``) and the expected literal (``3``) that never enters the sandbox. The child reports the
value over the result channel and the trusted side compares it. Code under test therefore cannot
forge a pass by writing to the channel, exiting early or patching builtins: it would have to
produce the right value, which is what the test asks for. Tests of any other shape (``assert
is_prime(7)``, multi-line checks, HumanEval ``check(candidate)`` programs) run whole in the child
and pass when they complete without an exception; see docs/sandbox.md for that weaker guarantee.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Literal

_NO_EXPECTED = object()


@dataclass(frozen=True)
class Probe:
    """One unit the child runs. ``mode="value"``: evaluate ``source`` and send its encoded value;
    ``mode="call"``: call ``source`` (a function name) on input ``input_index`` of the job and send
    the encoded result (io jobs; compared on the trusted side by :mod:`diffucoder.sandbox.evalplus`);
    ``mode="exec"``: run ``source`` and report whether it completed."""

    source: str
    mode: Literal["value", "call", "exec"]
    # judge side only (never sent to the child)
    op: Literal["==", "!=", "is", "is not", "completed", "output"] = "completed"
    expected: Any = field(default=None, compare=False)
    input_index: int = 0
    arguments: Any = field(default=None, compare=False)  # io probes: the decoded input (for oracles)

    def wire(self) -> dict[str, Any]:
        """What the child receives: the source and mode, never the expected value."""
        if self.mode == "call":
            return {"source": self.source, "mode": "call", "input": self.input_index}
        return {"source": self.source, "mode": self.mode}

    def judge(self, value: Any) -> bool:
        """Verdict for a value the child reported, for split asserts (already decoded by the codec,
        so ``==`` runs none of the solution's code). Python's ``assert`` semantics: a comparison
        that raises or whose result has no truth value fails."""
        try:
            if self.op in ("==", "!="):
                return bool(value == self.expected if self.op == "==" else value != self.expected)
        except Exception:  # noqa: BLE001 - e.g. a numpy array compared with a list
            return False
        if self.op == "is":
            return value is self.expected
        if self.op == "is not":
            return value is not self.expected
        return True  # "completed": reaching here means the test ran to the end


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO_EXPECTED


def probe_for_assert(test: str) -> Probe:
    """Split ``assert EXPR OP LITERAL`` (either side literal) when possible, else run the test whole."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return Probe(source=test, mode="exec")
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
        cmp = tree.body[0].test
        if isinstance(cmp, ast.Compare) and len(cmp.ops) == 1:
            ops = {ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not"}
            op = ops.get(type(cmp.ops[0]))
            left, right = cmp.left, cmp.comparators[0]
            if op is not None:
                for expr, lit in ((left, right), (right, left)):
                    expected = _literal(lit)
                    if expected is _NO_EXPECTED or _literal(expr) is not _NO_EXPECTED:
                        continue
                    if op in ("is", "is not") and expected not in (None, True, False):
                        continue
                    return Probe(source=ast.unparse(expr), mode="value", op=op, expected=expected)
    return Probe(source=test, mode="exec")


def probes_for_io(entry_point: str, inputs: list[Any], expected: list[Any] | None) -> list[Probe]:
    """EvalPlus-style io tests: call ``entry_point(*args)`` on each input; the child reads the
    arguments from the job's own input list, so inputs need no Python literal form. The expected
    outputs stay here, for :class:`diffucoder.sandbox.evalplus.TierComparison`; None = collect outputs."""
    if not entry_point.isidentifier():
        raise ValueError(f"entry_point {entry_point!r} is not a Python identifier")
    if expected is not None and len(expected) != len(inputs):
        raise ValueError(f"expected has {len(expected)} items but inputs has {len(inputs)}")
    return [
        Probe(
            source=entry_point,
            mode="call",
            op="output" if expected is None else "==",
            expected=None if expected is None else expected[i],
            input_index=i,
            arguments=args,
        )
        for i, args in enumerate(inputs)
    ]
