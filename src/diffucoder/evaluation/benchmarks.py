"""Benchmark loaders: HumanEval(+), MBPP(+) and the tiny held-out tasks as one :class:`Problem` type.

Formats (see diffucoder/benchmark_data/README.md and docs/interfaces.md):
- EvalPlus HumanEval+ / MBPP+ (``*.jsonl.gz``): ``task_id, prompt, entry_point, canonical_solution,
  base_input, plus_input, atol`` (+ ``assertion`` for MBPP+). Both are *io* benchmarks: the program is
  called on each input and compared with the canonical solution's output (EvalPlus semantics).
  ``humaneval`` / ``mbpp_plus``-base use ``base_input`` only; the ``_plus`` variants add ``plus_input``.
- Original MBPP (``mbpp.jsonl``): ``text, code, task_id, test_setup_code, test_list``: an *asserts*
  benchmark (the reference ``code`` must pass every ``test_list`` assert).
- Tiny tasks (``heldout.jsonl``): ``task_id, prompt, entry_point, solution, tests``: asserts.

Every file may be a local path or an ``s3://`` URI (read through :mod:`diffucoder.storage`). A bad row
raises :class:`BenchmarkFormatError` naming the URI, the line and the field.
"""

from __future__ import annotations

import ast
import builtins
import gzip
import json
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diffucoder import benchmark_data
from diffucoder.evaluation.config import EvaluationConfig

IO_BENCHMARKS = ("humaneval", "humaneval_plus", "mbpp_plus")
ALL_BENCHMARKS = ("humaneval", "humaneval_plus", "mbpp", "mbpp_plus", "tiny_heldout")


class BenchmarkFormatError(ValueError):
    """A benchmark file or row does not have the expected format (the message names where)."""


@dataclass(frozen=True)
class Problem:
    """One benchmark problem, ready for prompting and execution.

    ``kind="io"``: call ``entry_point`` on each of ``inputs`` and compare with the reference's outputs
    (``atol`` for floats). ``kind="asserts"``: run ``program + setup`` followed by each of ``tests``.
    ``code_prompt`` is code the program is built on (the HumanEval signature + docstring, which also
    defines helpers such as ``poly``); it is empty for the text-only benchmarks.
    """

    benchmark: str
    task_id: str
    prompt: str
    entry_point: str
    reference: str
    kind: str
    code_prompt: str = ""
    tests: tuple[str, ...] = ()
    setup: str = ""
    inputs: tuple = field(default=(), repr=False)
    atol: float = 0.0


def _read_jsonl(uri: str) -> list[dict[str, Any]]:
    """Rows of a JSONL (optionally gzipped) file at a local path or s3:// URI."""
    from diffucoder import storage

    raw = storage.read_bytes(uri)
    if uri.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise BenchmarkFormatError(f"{uri}: not a valid gzip file ({exc})") from exc
    rows = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkFormatError(f"{uri} line {lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise BenchmarkFormatError(
                f"{uri} line {lineno}: expected a JSON object, got {type(row).__name__}"
            )
        row["__line__"] = lineno
        rows.append(row)
    if not rows:
        raise BenchmarkFormatError(f"{uri}: no rows")
    return rows


def _field(row: dict, name: str, uri: str, kind: type | tuple[type, ...] = str) -> Any:
    if name not in row:
        raise BenchmarkFormatError(f"{uri} line {row['__line__']}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind):
        raise BenchmarkFormatError(
            f"{uri} line {row['__line__']}: field {name!r} should be {kind}, got {type(value).__name__}"
        )
    return value


# --- MBPP+ input types -------------------------------------------------------------------------
# JSON stores tuples, sets and complex numbers as lists / strings, but MBPP+ functions are specified
# (and contract-checked) on the Python types shown in the prompt's example assert. EvalPlus restores
# them with a hand-kept table of task ids; we derive the shape from the example call's literal
# arguments instead, so the types match what the model was shown. docs/evaluation.md lists where this
# differs from EvalPlus (a few tasks whose example uses a tuple that EvalPlus passes as a list).


def example_call_args(assertion: str, entry_point: str) -> list[Any] | None:
    """Literal arguments of the first ``entry_point(...)`` call in the example asserts, or None."""
    try:
        tree = ast.parse(assertion)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point:
            try:
                return [ast.literal_eval(arg) for arg in node.args]
            except ValueError:
                return None
    return None


def _is_container(value: Any) -> bool:
    return isinstance(value, list | tuple | set | frozenset | dict)


def _template_for(value: Any, candidates: list[Any]) -> Any:
    """The template element of the same kind as ``value`` (container vs scalar), if any."""
    for cand in candidates:
        if _is_container(cand) == _is_container(value):
            return cand
    return None


def coerce_to_template(value: Any, template: Any) -> Any:
    """Rebuild a JSON-decoded ``value`` with the container/number types of ``template``."""
    if isinstance(template, tuple | list | set | frozenset) and isinstance(value, list):
        elems = list(template)
        positional = isinstance(template, tuple) and len(elems) == len(value)
        items = []
        for i, v in enumerate(value):
            t = elems[i] if positional else None
            if t is None or _is_container(t) != _is_container(v):
                # A nested list deeper than the example's nesting takes the enclosing container's
                # type (recursive structures such as Mbpp/580's tuples of tuples of ...).
                t = _template_for(v, elems) or template
            items.append(coerce_to_template(v, t))
        return items if isinstance(template, list) else type(template)(items)
    if isinstance(template, dict) and isinstance(value, dict) and template:
        inner = next(iter(template.values()))
        return {k: coerce_to_template(v, inner) for k, v in value.items()}
    # Numbers JSON could not hold (complex, or a float saved as text) come back as strings; a string
    # that does not parse is a genuine string input (MBPP+ mixes types inside one argument).
    numeric = isinstance(template, int | float | complex) and not isinstance(template, bool)
    if (
        numeric
        and isinstance(template, complex)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return complex(value)
    if numeric and isinstance(value, str):
        for parse in (float, complex):
            try:
                return parse(value)
            except ValueError:
                continue
    return value


def _restore_input_types(inputs: list, template: list[Any] | None) -> list:
    if template is None:
        return inputs
    return [
        [coerce_to_template(v, t) for v, t in zip(args, template, strict=True)]
        if len(args) == len(template)
        else args
        for args in inputs
    ]


# --- loaders -----------------------------------------------------------------------------------


def _inputs(row: dict, name: str, uri: str) -> list:
    value = row.get(name, [])
    if value == {}:  # MbppPlus v0.2.0 Mbpp/793 stores "no plus inputs" as {}
        return []
    if not isinstance(value, list) or not all(isinstance(args, list) for args in value):
        raise BenchmarkFormatError(
            f"{uri} line {row['__line__']}: field {name!r} must be a list of argument lists"
        )
    return value


def load_evalplus(uri: str, benchmark: str, with_plus: bool) -> list[Problem]:
    """HumanEval+ or MBPP+ problems (io kind); ``with_plus=False`` keeps only the base inputs."""
    problems = []
    for row in _read_jsonl(uri):
        task_id = _field(row, "task_id", uri)
        entry_point = _field(row, "entry_point", uri)
        prompt = _field(row, "prompt", uri)
        canonical = _field(row, "canonical_solution", uri)
        inputs = _inputs(row, "base_input", uri) + (_inputs(row, "plus_input", uri) if with_plus else [])
        is_mbpp = "assertion" in row
        if is_mbpp:
            template = example_call_args(_field(row, "assertion", uri), entry_point)
            inputs = _restore_input_types(inputs, template)
        atol = float(_field(row, "atol", uri, (int, float)))
        problems.append(
            Problem(
                benchmark=benchmark,
                task_id=task_id,
                prompt=prompt,
                entry_point=entry_point,
                # HumanEval's canonical solution is a body that continues the prompt; MBPP+'s is a program.
                reference=canonical if is_mbpp else prompt + canonical,
                code_prompt="" if is_mbpp else prompt,
                kind="io",
                inputs=tuple(inputs),
                atol=atol,
            )
        )
    return problems


def mbpp_prompt(text: str, first_test: str) -> str:
    """Original MBPP in the MBPP+ prompt shape: the task text and one example assert in a docstring."""
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def verbatim_test(test: str) -> str:
    """An MBPP assert as a small program the sandbox runs as written (exact Python semantics, as in
    MBPP's own harness) instead of splitting it into a value comparison with float tolerance; this
    also lets results the sandbox codec cannot carry (a ``Counter`` in Mbpp/40, /88) be compared."""
    return "def _mbpp_check():\n" + textwrap.indent(test.strip(), "    ") + "\n\n\n_mbpp_check()\n"


def load_mbpp(uri: str, task_ids: tuple[int, int]) -> list[Problem]:
    """Original MBPP rows with ``task_ids[0] <= task_id <= task_ids[1]`` (asserts kind)."""
    problems = []
    lo, hi = task_ids
    for row in _read_jsonl(uri):
        task_id = _field(row, "task_id", uri, int)
        if not lo <= task_id <= hi:
            continue
        tests = _field(row, "test_list", uri, list)
        if not tests or not all(isinstance(t, str) for t in tests):
            raise BenchmarkFormatError(
                f"{uri} line {row['__line__']}: field 'test_list' must be non-empty strings"
            )
        code = _field(row, "code", uri).replace("\r\n", "\n")
        entry_point = _entry_point_of(tests[0])
        # MBPP's setup code may use the solution's definitions (Mbpp/367 builds trees of its Node
        # class), so it runs after the program (see execution._job).
        setup = (row.get("test_setup_code") or "").replace("\r\n", "\n")
        problems.append(
            Problem(
                benchmark="mbpp",
                task_id=f"Mbpp/{task_id}",
                prompt=mbpp_prompt(_field(row, "text", uri), tests[0]),
                entry_point=entry_point,
                reference=code,
                kind="asserts",
                tests=tuple(verbatim_test(t) for t in tests),
                setup=setup,
            )
        )
    return problems


def _entry_point_of(assert_line: str) -> str:
    """The function an MBPP assert calls first (MBPP rows carry no entry_point field)."""
    try:
        tree = ast.parse(assert_line)
    except SyntaxError:
        return ""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and not hasattr(builtins, node.func.id)
        ):
            return node.func.id
    return ""


def load_tiny_tasks(uri: str) -> list[Problem]:
    """Tiny held-out tasks from the data stage (asserts kind)."""
    problems = []
    for row in _read_jsonl(uri):
        tests = _field(row, "tests", uri, list)
        problems.append(
            Problem(
                benchmark="tiny_heldout",
                task_id=str(_field(row, "task_id", uri, (str, int))),
                prompt=_field(row, "prompt", uri),
                entry_point=_field(row, "entry_point", uri),
                reference=_field(row, "solution", uri),
                kind="asserts",
                tests=tuple(tests),
            )
        )
    return problems


# Which file setting each benchmark of the shipped layout reads (under evaluation.data_root).
_FILE_SETTING = {
    "humaneval": "humaneval_plus_file",
    "humaneval_plus": "humaneval_plus_file",
    "mbpp_plus": "mbpp_plus_file",
    "mbpp": "mbpp_file",
}


def _resolve(root: str, name: str) -> str:
    if root.startswith("s3://"):
        return root.rstrip("/") + "/" + name
    return str(Path(root).expanduser().resolve() / name)


def benchmark_uri(name: str, cfg: EvaluationConfig) -> str:
    """Where benchmark ``name`` is read from: ``data_root`` (or the shipped data) + its file setting."""
    if name == "tiny_heldout":
        if not cfg.tiny_heldout_uri:
            raise ValueError(
                "benchmark tiny_heldout needs evaluation.tiny_heldout_uri (the data stage's heldout.jsonl)"
            )
        return cfg.tiny_heldout_uri
    if name not in _FILE_SETTING:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(ALL_BENCHMARKS)}")
    return _resolve(benchmark_data.root(cfg.data_root), getattr(cfg, _FILE_SETTING[name]))


def _missing_file_error(name: str, uri: str, cfg: EvaluationConfig) -> FileNotFoundError:
    """Name the file and the settings that point at it, and how to fix them."""
    if name == "tiny_heldout":
        return FileNotFoundError(
            f"benchmark file {uri} does not exist (evaluation.tiny_heldout_uri); point it at the data "
            "stage's heldout.jsonl"
        )
    setting = _FILE_SETTING[name]
    return FileNotFoundError(
        f"benchmark file {uri} does not exist (benchmark {name}: evaluation.data_root={cfg.data_root!r}, "
        f"evaluation.{setting}={getattr(cfg, setting)!r}); point evaluation.data_root at a directory or "
        "s3:// prefix with that file, or set it to null for the data shipped with diffucoder"
    )


def load_benchmark(name: str, cfg: EvaluationConfig) -> list[Problem]:
    """Problems of one benchmark, truncated to ``cfg.problem_cap(name)`` and ``cfg.max_io_inputs``."""
    uri = benchmark_uri(name, cfg)
    try:
        if name in IO_BENCHMARKS:
            problems = load_evalplus(uri, name, with_plus=name != "humaneval")
        elif name == "mbpp":
            problems = load_mbpp(uri, cfg.mbpp_task_ids)
        else:
            problems = load_tiny_tasks(uri)
    except FileNotFoundError as exc:
        raise _missing_file_error(name, uri, cfg) from exc
    cap = cfg.problem_cap(name)
    if cap is not None:
        problems = problems[:cap]
    if cfg.max_io_inputs is not None:
        problems = [_cap_inputs(p, cfg.max_io_inputs) for p in problems]
    return problems


def _cap_inputs(problem: Problem, cap: int) -> Problem:
    return replace(problem, inputs=problem.inputs[:cap]) if len(problem.inputs) > cap else problem
