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
import hashlib
import json
from collections.abc import Iterator
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
class Tier:
    """One EvalPlus input tier of a problem: ``base`` (the original tests) or ``plus`` (EvalPlus's)."""

    name: str
    inputs: tuple = field(repr=False)


@dataclass(frozen=True)
class Problem:
    """One benchmark problem, ready for prompting and execution.

    ``kind="io"``: call ``entry_point`` on each input of each of ``tiers`` and compare with the
    reference's outputs as EvalPlus does (``atol`` for floats, the special oracles of ``dataset``);
    each tier is judged on its own, as EvalPlus runs base and plus in separate processes.
    ``kind="asserts"``: run ``program + setup`` followed by each of ``tests``. ``code_prompt`` is code
    the program is built on (the HumanEval signature + docstring, which also defines helpers such as
    ``poly``); it is empty for the text-only benchmarks. ``source_sha256`` names the data file's
    content (reference cache key and version check of samples files).
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
    tiers: tuple[Tier, ...] = ()
    atol: float = 0.0
    dataset: str | None = None  # "humaneval" | "mbpp" for EvalPlus problems
    source_sha256: str = ""

    @property
    def inputs(self) -> tuple:
        """Every tier's inputs, in order."""
        return tuple(args for tier in self.tiers for args in tier.inputs)


@dataclass(frozen=True)
class DataFile:
    """A benchmark file's bytes and their digests (EvalPlus names a dataset by the file's MD5)."""

    uri: str
    raw: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def md5(self) -> str:
        return hashlib.md5(self.raw).hexdigest()  # noqa: S324 - EvalPlus's dataset hash, not security


def read_data_file(uri: str) -> DataFile:
    from diffucoder import storage

    try:
        return DataFile(uri, storage.read_bytes(uri))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"benchmark file {uri} does not exist") from exc


def jsonl_objects(uri: str, raw: bytes, error: type[ValueError]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSONL file's bytes, gunzipped when its name
    ends in ``.gz``; ``error`` names the file and line of anything that is not a JSON object."""
    if uri.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise error(f"{uri}: not a valid gzip file ({exc})") from None
    for line_no, line in enumerate(raw.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{uri} line {line_no}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise error(f"{uri} line {line_no}: expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def _read_jsonl(uri: str, raw: bytes | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL (optionally gzipped) file at a local path or s3:// URI."""
    if raw is None:
        raw = read_data_file(uri).raw
    rows = []
    for line_no, row in jsonl_objects(uri, raw, BenchmarkFormatError):
        row["__line__"] = line_no
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
# JSON stores tuples, sets and complex numbers as lists / strings. EvalPlus 0.3.1 rebuilds them with
# a hand-kept table of task ids (evalplus/data/mbpp.py, mbpp_deserialize_inputs); the expected outputs
# and every verdict depend on those exact arguments, so the table is EvalPlus's, entry for entry
# (it passes lists where a few prompts show tuples, e.g. Mbpp/98, and keeps strings such as 'j' and
# '3' as strings).

_TUPLE_EACH_ARG = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630}
_TUPLE_EACH_ARG |= {726, 740, 744, 809}
_TUPLES_IN_EACH_ARG = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_TUPLES_IN_FIRST_ARG = {75, 413, 444, 753}
_FIRST_ARG_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_ALL_TUPLES = {580, 615, 791}


def _all_tuples(value: Any) -> Any:
    return tuple(_all_tuples(v) for v in value) if isinstance(value, list) else value


def mbpp_deserialize_inputs(task_id: str, inputs: list) -> list:
    """EvalPlus 0.3.1's ``mbpp_deserialize_inputs``: MBPP+ arguments with their Python types."""
    n = int(task_id.split("/")[-1])
    if n in _TUPLE_EACH_ARG:
        return [[tuple(lst) for lst in inp] for inp in inputs]
    if n in _TUPLES_IN_EACH_ARG:
        return [[[tuple(lst) for lst in lst_lst] for lst_lst in inp] for inp in inputs]
    if n in _TUPLES_IN_FIRST_ARG:
        return [[[tuple(lst) for lst in inp[0]]] + [inp[1]] for inp in inputs]
    if n in (106, 750):
        return [[inp[0]] + [tuple(inp[1])] for inp in inputs]
    if n == 115:
        # an empty item becomes {} (a dict), as in EvalPlus
        return [
            [[set(item) if isinstance(item, list) and len(item) else {} for item in inp[0]]] for inp in inputs
        ]
    if n == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if n in _FIRST_ARG_TUPLE:
        return [[tuple(inp[0])] + [inp[1]] for inp in inputs]
    if n in (259, 401, 445):
        nested = [[[tuple(lst) for lst in lst_lst] for lst_lst in inp] for inp in inputs]
        return [[tuple(lst) for lst in inp] for inp in nested]
    if n == 278:
        first = [[[tuple(item) if isinstance(item, list) else item for item in inp[0]]] for inp in inputs]
        return [[tuple(lst) for lst in inp] for inp in first]
    if n == 307:
        return [[tuple(inp[0])] + [inp[1], inp[2]] for inp in inputs]
    if n == 722:
        return [[{key: tuple(value) for key, value in inp[0].items()}] + inp[1:] for inp in inputs]
    if n == 252:
        return [[complex(inp[0])] for inp in inputs]
    if n in _ALL_TUPLES:
        return [_all_tuples(inp) for inp in inputs]
    return inputs


def mbpp_serialize_inputs(task_id: str, inputs: list) -> list:
    """EvalPlus 0.3.1's ``mbpp_serialize_inputs``: failing inputs in its results file, as JSON."""
    n = int(task_id.split("/")[-1])
    if n == 115:
        return [[[list(item) for item in inp[0]]] for inp in inputs]
    if n == 124:
        return [(str(inp[0]), str(inp[1])) for inp in inputs]
    if n == 252:
        return [[str(inp[0])] for inp in inputs]
    return inputs


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
    """HumanEval+ or MBPP+ problems (io kind); ``with_plus=False`` keeps only the base tier."""
    data = read_data_file(uri)
    problems = []
    for row in _read_jsonl(uri, data.raw):
        task_id = _field(row, "task_id", uri)
        entry_point = _field(row, "entry_point", uri)
        prompt = _field(row, "prompt", uri)
        canonical = _field(row, "canonical_solution", uri)
        is_mbpp = "assertion" in row
        tiers = []
        for name in ("base", "plus") if with_plus else ("base",):
            inputs = _inputs(row, f"{name}_input", uri)
            if is_mbpp:
                inputs = mbpp_deserialize_inputs(task_id, inputs)
            tiers.append(Tier(name, tuple(inputs)))
        atol = float(_field(row, "atol", uri, (int, float)))
        problems.append(
            Problem(
                benchmark=benchmark,
                task_id=task_id,
                prompt=prompt,
                entry_point=entry_point,
                # EvalPlus runs prompt + canonical_solution for both (MBPP+'s prompt is a docstring)
                reference=prompt + canonical,
                code_prompt="" if is_mbpp else prompt,
                kind="io",
                tiers=tuple(tiers),
                atol=atol,
                dataset="mbpp" if is_mbpp else "humaneval",
                source_sha256=data.sha256,
            )
        )
    return problems


def mbpp_prompt(text: str, first_test: str) -> str:
    """Original MBPP in the MBPP+ prompt shape: the task text and one example assert in a docstring."""
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def load_mbpp(uri: str, task_ids: tuple[int, int]) -> list[Problem]:
    """Original MBPP rows with ``task_ids[0] <= task_id <= task_ids[1]`` (asserts kind)."""
    problems = []
    lo, hi = task_ids
    data = read_data_file(uri)
    for row in _read_jsonl(uri, data.raw):
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
                # each `assert EXPR == LITERAL` becomes a value the server compares with Python's
                # exact `==` (sandbox/probes.py); a Counter (Mbpp/40, /88) arrives as a Counter
                tests=tuple(t.strip() for t in tests),
                setup=setup,
                source_sha256=data.sha256,
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
    data = read_data_file(uri)
    for row in _read_jsonl(uri, data.raw):
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
                source_sha256=data.sha256,
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


def evalplus_data_file(dataset: str, cfg: EvaluationConfig) -> DataFile:
    """The HumanEval+ (``dataset="humaneval"``) or MBPP+ (``"mbpp"``) file the config names."""
    return read_data_file(benchmark_uri("humaneval" if dataset == "humaneval" else "mbpp_plus", cfg))


def data_task_ids(data: DataFile) -> set[str]:
    return {str(row.get("task_id")) for row in _read_jsonl(data.uri, data.raw)}


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
    return replace(problem, tiers=tuple(replace(t, inputs=t.inputs[:cap]) for t in problem.tiers))
