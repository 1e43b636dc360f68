"""Agreement with EvalPlus 0.3.1 itself, sample for sample, and both sides' wall time.

Two commands:

    # build the hard sample set (committed under tests/evaluation/data/evalplus_hard/)
    .venv/bin/python benchmarks/evalplus_agreement.py build [--data-root DIR] [--seed S]
    # install evalplus==0.3.1 into its own venv (cached in build/), score the set with it
    # (offline, on the same data files) and with `diffucoder evaluate --samples`, compare
    .venv/bin/python benchmarks/evalplus_agreement.py run [--data-root DIR] [--dataset humaneval] [--once] [--tasks N [--seed S]]

The sample set, per task: the canonical solution; printing megabytes, ``sys.exit`` or ``os._exit`` at
import (in turn); the canonical solution returning a wrong type where that changes an output
(``_CONVERTERS``); the first single-token mutant that passes base and fails plus and the first that
fails base, of up to ``MUTANTS_PER_TASK`` tried in a seeded order; the wrong-type samples and the
mutants each judged in-process against the reference outputs with EvalPlus's comparison and kept
only clear of every time limit (``build --refresh-converters`` rejudges the wrong-type ones); the canonical
solution right on the base inputs only (``plus_wrong``); and on a few tasks programs slowed towards
each time limit (the 1 s floor, 4x the reference, the tier's wall cap). ``build`` writes the counts
per kind to composition.json.

Every time limit is wall-clock, in both tools, so a slowed sample must sit clearly on one side of
each limit on a loaded machine, whatever the load when either tool timed its reference: the
sleeping samples at most half their limit or at least 1.2x it (a sleep takes its time at any load;
``build --refresh-sleepers`` rewrites them alone), the repeated canonical call 10x or more clear:
``repeat_2x`` only on tasks whose every input's reference takes under 0.05 s (2x is a tenth of the
1 s floor), ``repeat_40x`` on tasks with a plus input over 0.3 s (10x its 4x-the-reference limit)
and every base input under 1 ms (``build --refresh-repeats`` replaces them alone). A program at 2x
the reference of a heavy input is not on a side: either tool puts it on either, as load changes.
The canonical solutions of heavy tasks (inputs of 1-4 s) still move under load, in EvalPlus too;
``run --rerun-disagreements`` scores those again alone. ``run`` prints one JSON object: per dataset the agreement counts, the
disagreements, and both sides' wall time (warm caches unless ``--once``: EvalPlus's expected outputs
and our reference cache both computed by a first run).

EvalPlus 0.3.1 is wrong in two places, the only disagreements allowed (``KNOWN_EVALPLUS_BUGS``):
HumanEval/32 fails every sample (its oracle ``continue``s without recording the pass), and the plus
tier of Mbpp/255 fails every sample (an input's output exceeds the 4 GiB cap in EvalPlus's worker,
which inherits the parent's loaded expected outputs).
"""

from __future__ import annotations

import argparse
import builtins
import copy
import gzip
import hashlib
import io
import json
import keyword
import os
import pickle
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import tokenize
from collections.abc import Callable, Iterator
from multiprocessing import Pool
from pathlib import Path
from typing import Any

# the sibling machine.py; tests load this file by path, so its folder is not on sys.path by itself
sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO / "tests" / "evaluation" / "data" / "evalplus_hard"
EVALPLUS_VENV = REPO / "build" / "evalplus-0.3.1"
DATA_FILES = {
    "humaneval": "evalplus/HumanEvalPlus-v0.1.10.jsonl.gz",
    "mbpp": "evalplus/MbppPlus-v0.2.0.jsonl.gz",
}
OVERRIDE_VARS = {"humaneval": "HUMANEVAL_OVERRIDE_PATH", "mbpp": "MBPP_OVERRIDE_PATH"}
# (task, tier) where EvalPlus 0.3.1 fails every sample; our verdict follows the intended semantics
KNOWN_EVALPLUS_BUGS = {("HumanEval/32", "base"), ("HumanEval/32", "plus"), ("Mbpp/255", "plus")}


# --- building the sample set -----------------------------------------------------------------------

SEED = 0  # orders each task's mutants (random.Random(f"{seed}:{task_id}")); recorded in composition.json
MUTANTS_PER_TASK = 300  # tried at most per task, in that order
REFERENCE_CACHE = REPO / "build" / "evalplus-hard-references"
WALL_CAP_S = 61.0  # a tier's process in EvalPlus 0.3.1: min(60, sum of per-input limits) + 1

# single-token mutations: each token -> its replacements ("" deletes it: `not x` -> `x`, `abs(x)` -> `(x)`)
_SWAPS = {
    "+": ["-"], "-": ["+"], "*": ["//", "+"], "/": ["//", "*"], "//": ["/", "*"], "%": ["//"],
    "**": ["*"], "<": ["<=", ">"], "<=": ["<", ">="], ">": [">=", "<"], ">=": [">", "<="],
    "==": ["!="], "!=": ["=="], "+=": ["-="], "-=": ["+="], "*=": ["+="], "<<": [">>"], ">>": ["<<"],
    "&": ["|"], "|": ["&"], "^": ["|"], "and": ["or"], "or": ["and"], "not": [""], "is": ["is not"],
    "in": ["not in"], "True": ["False"], "False": ["True"], "min": ["max"], "max": ["min"],
    "any": ["all"], "all": ["any"], "break": ["continue"], "continue": ["break"], "lower": ["upper"],
    "upper": ["lower"], "startswith": ["endswith"], "endswith": ["startswith"],
    "isupper": ["islower"], "islower": ["isupper"], "isdigit": ["isalpha"], "isalpha": ["isdigit"],
    "sorted": ["list"], "abs": [""], "round": ["int"], "int": ["round"], "floor": ["ceil"],
    "ceil": ["floor"], "strip": ["lstrip"], "append": ["extend"],
}  # fmt: skip

_FLOAT_SHIFT = """
def _convert(r):
    if type(r) is float:
        return {shifted}
    if type(r) in (list, tuple):
        return type(r)(_convert(x) for x in r)
    return r
"""

_CONVERTERS = {
    "list_tuple": """
def _convert(r):
    if type(r) is list:
        return tuple(r)
    if type(r) is tuple:
        return list(r)
    return r
""",
    "numpy": """
import numpy as _np
def _convert(r):
    if type(r) in (list, tuple) and r and all(type(x) in (int, float, bool) for x in r):
        return _np.array(r)
    if type(r) in (int, float, bool):
        return {int: _np.int64, float: _np.float64, bool: _np.bool_}[type(r)](r)
    return r
""",
    "namedtuple": """
import collections as _collections
def _convert(r):
    if type(r) is tuple:
        return _collections.namedtuple("Result", [f"f{i}" for i in range(len(r))])(*r)
    return r
""",
    "float_int": """
def _convert(r):
    if type(r) is int:
        return float(r)
    if type(r) is float and r == r and abs(r) < 1e300:
        return int(r)
    if type(r) is list and r and all(type(x) is int for x in r):
        return [float(x) for x in r]
    return r
""",
    "str_bytes": """
def _convert(r):
    if type(r) is str:
        return r.encode()
    return r
""",
    # every float moved, inside np.allclose(rtol=1e-07) and outside it
    "float_close": _FLOAT_SHIFT.format(shifted="r * (1 + 1e-9)"),
    "float_off": _FLOAT_SHIFT.format(shifted="r + 1e-4 * max(1.0, abs(r))"),
    "generator": """
def _convert(r):
    if type(r) is list:
        return (x for x in r)
    return r
""",
}


def _wrapped(program: str, entry_point: str, converter: str) -> str:
    return (
        f"{program}\n\n{converter}\n_original = {entry_point}\n\n"
        f"def {entry_point}(*args, **kwargs):\n    return _convert(_original(*args, **kwargs))\n"
    )


def _converter_changes(converter: str, outputs: list[Any]) -> bool:
    namespace: dict[str, Any] = {}
    exec(converter, namespace)  # noqa: S102 - our own converter source
    return any(
        type(namespace["_convert"](o)) is not type(o) or namespace["_convert"](o) != o for o in outputs
    )


# the canonical solution where an input is one of the base tier's, a wrong value of the same type
# elsewhere: passes base, fails plus (a program that learnt the visible tests)
_PLUS_WRONG = """
def _wrong(r):
    if type(r) is bool:
        return not r
    if type(r) in (int, float):
        return r + max(1, abs(r))
    if type(r) in (str, bytes):
        return r + r[:1] if r else type(r)(b"?")
    if type(r) in (list, tuple):
        return r[:-1] if r else type(r)([0])
    if type(r) in (set, dict):
        return type(r)() if r else {0: 0}
    return None if r is not None else 0
"""


def plus_wrong(program: str, entry_point: str, base: list) -> str | None:
    """The plus_wrong sample (None where the base inputs' repr is too large to embed)."""
    seen = repr(sorted({repr(tuple(args)) for args in base}))  # sorted: the same text every build
    if len(seen) > 200_000:
        return None
    return (
        f"{program}\n\n{_PLUS_WRONG}\n_BASE = set({seen})\n_original = {entry_point}\n\n"
        f"def {entry_point}(*args):\n    r = _original(*args)\n"
        "    return r if repr(args) in _BASE else _wrong(r)\n"
    )


def single_token_mutants(source: str, prefix: str = "") -> Iterator[str]:
    """Variants of ``source`` that differ in one operator, name or literal (``_SWAPS``; an integer n
    becomes n + 1 and n - 1, a short string literal "", a variable another of the source's
    variables) and still compile after ``prefix`` (HumanEval's solutions are bodies of the prompt's
    function), in source order."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    variables = sorted(
        {
            tok.string
            for tok in tokens
            if tok.type == tokenize.NAME
            and not keyword.iskeyword(tok.string)
            and not hasattr(builtins, tok.string)
            and tok.string not in _SWAPS
        }
    )
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    for tok in tokens:
        if tok.type not in (tokenize.OP, tokenize.NAME, tokenize.NUMBER, tokenize.STRING):
            continue
        replacements = list(_SWAPS.get(tok.string, []))
        if tok.type == tokenize.STRING and len(tok.string) <= 5 and tok.string not in ('""', "''"):
            replacements.append('""')  # a short literal (a separator, a bracket) emptied
        if tok.type == tokenize.NUMBER and tok.string.isdigit():
            n = int(tok.string)
            replacements += [str(n + 1)] + ([str(n - 1)] if n > 0 else [])
        if tok.string in variables:
            replacements += [v for v in variables if v != tok.string]
        start = offsets[tok.start[0] - 1] + tok.start[1]
        end = offsets[tok.end[0] - 1] + tok.end[1]
        for replacement in replacements:
            mutant = source[:start] + replacement + source[end:]
            try:
                compile(prefix + mutant, "<mutant>", "exec")
            except SyntaxError:
                continue
            yield mutant


class _Alarm(BaseException):
    """A call ran past its time budget (raised by SIGALRM in the forked child)."""


def _on_alarm(signum, frame):  # noqa: ARG001
    raise _Alarm()


def _in_child(work: Callable[[], Any], *, memory: int) -> Any:
    """``work()`` in a forked child with ``memory`` bytes of address space and output discarded; its
    result, or None where it raised or the child died. Forking from the worker that already holds the
    inputs and reference outputs keeps a mutant's check at a few milliseconds."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        data = b""
        try:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            signal.signal(signal.SIGALRM, _on_alarm)
            data = pickle.dumps(work())
        except BaseException:  # noqa: BLE001, S110 - the parent reads no data as "failed"
            pass
        with os.fdopen(write, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    try:
        return pickle.loads(data) if data else None
    except Exception:  # noqa: BLE001 - a truncated result: the child died while writing
        return None


def _load(program: str, seconds: float) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        exec(program, namespace)  # noqa: S102 - trusted canonical solutions and their mutants, in a capped child
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return namespace


def _call(function: Callable, args: list, limit: float) -> tuple[str, Any, float]:
    """("ok", output, seconds), ("error", None, seconds) or ("timeout", None, seconds)."""
    args = copy.deepcopy(args)
    began = time.perf_counter()
    try:
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            out = function(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Alarm:
        return "timeout", None, time.perf_counter() - began
    except BaseException:  # noqa: BLE001 - EvalPlus counts any exception as a failed input
        return "error", None, time.perf_counter() - began
    seconds = time.perf_counter() - began
    return ("ok" if seconds < limit else "timeout"), out, seconds


def reference_run(problem: dict[str, Any]) -> dict[str, list] | None:
    """The canonical solution's outputs and seconds per input on both tiers (None where it fails,
    as Mbpp/255's plus input 86 does under a 4 GiB cap)."""
    from diffucoder.sandbox.evalplus import MBPP_OUTPUT_NOT_NONE_TASKS

    def work() -> dict[str, list]:
        namespace = _load(problem["program"], 60)
        function = namespace[problem["entry_point"]]
        result: dict[str, list] = {}
        for tier in ("base", "plus"):
            outputs, seconds = [], []
            for args in problem[tier]:
                status, out, took = _call(function, args, 60)
                if status != "ok":
                    raise RuntimeError(f"{problem['task_id']}: the canonical solution did not return")
                outputs.append(out)
                seconds.append(took)
            if problem["dataset"] == "mbpp" and problem["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS:
                outputs = [o is not None for o in outputs]  # as EvalPlus stores them
            result[f"{tier}_outputs"], result[f"{tier}_seconds"] = outputs, seconds
        return result

    return _in_child(work, memory=4 << 30)


def judge(
    program: str, problem: dict[str, Any], reference: dict[str, list], *, plus_when: tuple[str, ...]
) -> tuple[str, str | None] | None:
    """``program``'s verdict per tier as EvalPlus gives it, "pass" or "fail" (a wrong value or an
    exception); the plus tier only when the base verdict is in ``plus_when``. None where the program
    does not load or a call runs past min(a quarter of its EvalPlus limit, 20x the reference + 50 ms):
    every verdict returned is one that no machine's speed can turn into a timeout."""
    from diffucoder.sandbox.evalplus import TierComparison

    def tier_verdict(function: Callable, tier: str) -> str | None:
        comparison = TierComparison(
            expected=reference[f"{tier}_outputs"],
            inputs=problem[tier],
            atol=problem["atol"],
            entry_point=problem["entry_point"],
            dataset=problem["dataset"],
        )
        for i, (args, r) in enumerate(zip(problem[tier], reference[f"{tier}_seconds"], strict=True)):
            status, out, _ = _call(function, args, min(0.25 * max(1.0, 4 * r), 20 * r + 0.05))
            if status == "timeout":
                return None
            if status == "error" or not comparison.passes(i, out):
                return "fail"
        return "pass"

    def work() -> tuple[str, str | None] | None:
        function = _load(program, 5)[problem["entry_point"]]
        base = tier_verdict(function, "base")
        if base is None or base not in plus_when:
            return None if base is None else (base, None)
        plus = tier_verdict(function, "plus")
        return None if plus is None else (base, plus)

    return _in_child(work, memory=2 << 30)


def converter_samples(problem: dict[str, Any], reference: dict[str, list]) -> list[dict[str, Any]]:
    """The canonical solution behind each converter of ``_CONVERTERS`` that changes one of its first
    200 outputs, kept only where :func:`judge` gives both tiers a verdict clear of every time limit,
    as mutants are. The wrapper rebinds the entry point, so a recursive solution calls it at every
    level and may run at several times its reference (Mbpp/583's ``catalan_number(15)``, 3.5 s, came
    within EvalPlus's 4x limit): on a heavy input such a sample's verdict is the machine's load."""
    flat = reference["base_outputs"] + reference["plus_outputs"]
    out = []
    for name, converter in _CONVERTERS.items():
        if not _converter_changes(converter, flat[:200]):
            continue
        program = _wrapped(problem["program"], problem["entry_point"], converter)
        # judged twice at most: a light call descheduled past its 50 ms on a loaded machine is not
        # a slow sample, while a slow one is slow again
        verdicts = (judge(program, problem, reference, plus_when=("pass", "fail")) for _ in range(2))
        if any(v is not None for v in verdicts):
            out.append({"task_id": problem["task_id"], "solution": program, "kind": name})
    return out


def mutant_samples(problem: dict[str, Any], reference: dict[str, list], seed: int) -> list[dict[str, Any]]:
    """Up to two single-token mutants, from the first ``MUTANTS_PER_TASK`` in a seeded order: the
    first that passes the base tier and fails the plus tier ("mutant") and the first that fails the
    base tier ("mutant_fails_base"), each clear of every time limit on both tiers."""
    mutants = list(single_token_mutants(problem["canonical"], prefix=problem["prompt"]))
    random.Random(f"{seed}:{problem['task_id']}").shuffle(mutants)
    found: dict[str, str] = {}
    for mutant in mutants[:MUTANTS_PER_TASK]:
        wanted = tuple(
            verdict
            for verdict, kind in (("pass", "mutant"), ("fail", "mutant_fails_base"))
            if kind not in found
        )
        if not wanted:
            break
        program = problem["prompt"] + mutant
        verdicts = judge(program, problem, reference, plus_when=wanted)
        if verdicts == ("pass", "fail"):
            found["mutant"] = program
        elif verdicts is not None and verdicts[0] == "fail" and verdicts[1] is not None:
            found["mutant_fails_base"] = program
    return [{"task_id": problem["task_id"], "solution": p, "kind": k} for k, p in sorted(found.items())]


_IO_KINDS = {
    "prints_megabytes": "print('x' * 2_000_000)\n{program}\n\n_quiet = {ep}\n\ndef {ep}(*a, **k):\n"
    "    print('y' * 100_000)\n    return _quiet(*a, **k)\n",
    "sys_exit": "import sys\nsys.exit(0)\n{program}",
    "os_exit": "import os\nos._exit(0)\n{program}",
}


def task_samples(job: tuple[int, dict[str, Any], dict[str, list] | None, int]) -> list[dict[str, Any]]:
    """Every sample of one task (runs in a worker process)."""
    index, problem, reference, seed = job
    task_id, program, ep = problem["task_id"], problem["program"], problem["entry_point"]
    samples = [{"task_id": task_id, "solution": program, "kind": "canonical"}]
    io_kind = list(_IO_KINDS)[index % len(_IO_KINDS)]  # each task gets one, in turn
    samples.append(
        {"task_id": task_id, "solution": _IO_KINDS[io_kind].format(program=program, ep=ep), "kind": io_kind}
    )
    if reference is None:
        return samples
    samples += converter_samples(problem, reference)
    samples += mutant_samples(problem, reference, seed)
    wrong = plus_wrong(program, ep, problem["base"])
    if wrong is not None and judge(wrong, problem, reference, plus_when=("pass",)) == ("pass", "fail"):
        samples.append({"task_id": task_id, "solution": wrong, "kind": "plus_wrong"})
    return samples


def _slow(program: str, ep: str, body: str, kind: str, task_id: str) -> dict[str, Any]:
    source = f"import time\n{program}\n\n_plain = {ep}\n_calls = [0]\n\ndef {ep}(*a, **k):\n{body}"
    return {"task_id": task_id, "solution": source, "kind": kind}


# sleeps, not work: a loaded machine can only lengthen a program, so each sits at most half its limit
# below it or at least 1.2x above it (load lengthens the passing ones by the canonical calls' time)
FIRST_CALL_SLEEPS = (0.5, 2.0)  # against the 1 s per-input floor
CAP_SHARES = {"slow_every_call_under_cap": 0.5, "slow_every_call_over_cap": 2.0}  # of WALL_CAP_S
MAX_SLEEP_PER_CALL = 0.5  # half the 1 s floor: the calls of the cap samples stay clear of it
_FIRST_CALL = (
    "    _calls[0] += 1\n    if _calls[0] == 1:\n        time.sleep({s})\n    return _plain(*a, **k)\n"
)


def first_call_sample(p: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The canonical solution sleeping ``seconds`` in its first call (the base tier's first input)."""
    body = _FIRST_CALL.format(s=seconds)
    return _slow(p["program"], p["entry_point"], body, f"slow_first_call_{seconds}s", p["task_id"])


def every_call_sample(p: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The canonical solution sleeping in every call, the sleeps adding up to ``CAP_SHARES[kind]`` of
    the plus tier's wall cap, or as near as calls of ``MAX_SLEEP_PER_CALL`` get (None where that is
    under 1.2x for the over-cap kind)."""
    per_call = min(MAX_SLEEP_PER_CALL, round(CAP_SHARES[kind] * WALL_CAP_S / len(p["plus"]), 3))
    if kind.endswith("over_cap") and per_call * len(p["plus"]) < 1.2 * WALL_CAP_S:
        return None
    every = f"    time.sleep({per_call})\n    return _plain(*a, **k)\n"
    return _slow(p["program"], p["entry_point"], every, kind, p["task_id"])


def slow_samples(problems: list[dict[str, Any]], plus_seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Programs near each time limit, sleeping (``FIRST_CALL_SLEEPS``, ``CAP_SHARES``): the 1 s
    per-input floor, on the first base call of four tasks with few base inputs; and the plus tier's
    wall cap (61 s: EvalPlus's min(60, sum of limits) + 1), a sleep in every call on one task with 80
    or more plus inputs (under) and on the task with the most (over), both of few base inputs and a
    plus tier whose reference takes under 1 s."""
    small = [p for p in problems if 3 <= len(p["base"]) <= 8 and len(p["plus"]) >= 20][:4]
    out = [first_call_sample(p, s) for p in small for s in FIRST_CALL_SLEEPS]
    few_base = [p for p in problems if len(p["base"]) <= 10 and plus_seconds[p["task_id"]] < 1.0]
    over = max(few_base, key=lambda p: len(p["plus"]))
    under = next(p for p in few_base if len(p["plus"]) >= 80 and p is not over)
    for p, kind in ((under, "slow_every_call_under_cap"), (over, "slow_every_call_over_cap")):
        sample = every_call_sample(p, kind)
        if sample is not None:
            out.append(sample)
    return out


def refresh_sleepers(data_root: Path, samples_dir: Path, dataset: str) -> dict[str, int]:
    """Rewrite the sleeping samples of an existing set with the current sleeps, on the tasks the set
    has them for (choosing those tasks needs every task's reference run, the sleeps do not), and
    its counts in composition.json. Returns the samples per kind."""
    rows = _jsonl(samples_dir / f"{dataset}.jsonl.gz")
    problems = {p["task_id"]: p for p in _problems(data_root, dataset)}
    first_tasks = list(dict.fromkeys(r["task_id"] for r in rows if r["kind"].startswith("slow_first_call")))
    new: dict[str, list[dict[str, Any]]] = {}
    for task_id in first_tasks:
        new.setdefault(task_id, []).extend(first_call_sample(problems[task_id], s) for s in FIRST_CALL_SLEEPS)
    for r in rows:
        if r["kind"] in CAP_SHARES:
            sample = every_call_sample(problems[r["task_id"]], r["kind"])
            new.setdefault(r["task_id"], []).extend([sample] if sample else [])
    out: list[dict[str, Any]] = []
    for r in rows:
        if r["kind"].startswith("slow_"):
            out += new.pop(r["task_id"], [])  # the task's new sleepers, where its first old one was
        else:
            out.append(r)
    return _rewrite_set(samples_dir, dataset, out)


# the canonical call repeated: 2x where every input is light (far under the 1 s floor even doubled on
# a loaded machine), 40x where the plus tier has a heavy input (its limit 4x the reference: 10x over
# it) and the base tier only light ones (40x of them stays far under the floor). A repeat near a
# limit (2x against 4x on a heavy input) lands on either side under load, in either tool.
REPEAT_UNDER, REPEAT_OVER = 2, 40
LIGHT_INPUT_S = 0.05  # repeat_2x: the slowest input of both tiers under this (2x: a tenth of the floor)
REPEAT_UNDER_TASKS = 8  # the first tasks in dataset order that are light
HEAVY_INPUT_S = 0.3  # repeat_40x: the slowest plus input over this (its limit is 4x the reference) ...
LIGHT_BASE_S = 0.001  # ... and the slowest base input under this (40x: 40 ms against the 1 s floor)


def _repeat_sample(p: dict[str, Any], times: int) -> dict[str, Any]:
    body = f"    for _ in range({times - 1}):\n        _plain(*a, **k)\n    return _plain(*a, **k)\n"
    return _slow(p["program"], p["entry_point"], body, f"repeat_{times}x", p["task_id"])


def scaled_slow_samples(
    problems: list[dict[str, Any]], slowest_s: dict[str, tuple[float, float]]
) -> list[dict[str, Any]]:
    """Against 4x the reference's time and the 1 s floor, the canonical call repeated
    (``REPEAT_UNDER`` / ``REPEAT_OVER``), each clear of its limit by 10x or more on the reference's
    own timing (``slowest_s``: per task the slowest base and plus input, seconds). A load-lengthened
    reference run only makes the choice stricter: a task timed light is light."""
    light = [p for p in problems if max(slowest_s[p["task_id"]]) < LIGHT_INPUT_S][:REPEAT_UNDER_TASKS]
    heavy = [
        p
        for p in problems
        if slowest_s[p["task_id"]][1] > HEAVY_INPUT_S and slowest_s[p["task_id"]][0] < LIGHT_BASE_S
    ]
    return [_repeat_sample(p, REPEAT_UNDER) for p in light] + [_repeat_sample(p, REPEAT_OVER) for p in heavy]


def _slowest_inputs(problems: list[dict[str, Any]], runs: list) -> dict[str, tuple[float, float]]:
    """Per task the reference's slowest base and plus input (infinite where the reference failed:
    neither light nor heavy)."""
    return {
        p["task_id"]: (max(r["base_seconds"], default=0.0), max(r["plus_seconds"], default=0.0))
        if r
        else (float("inf"), float("inf"))
        for p, r in zip(problems, runs, strict=True)
    }


def refresh_repeats(data_root: Path, samples_dir: Path, dataset: str, workers: int) -> dict[str, int]:
    """Replace the existing set's ``repeat_*`` samples with the current rule's (the reference runs
    cached under build/ choose the tasks), in the place ``build`` puts them, and update
    composition.json. Returns the samples per kind."""
    problems = _problems(data_root, dataset)
    with Pool(workers) as pool:
        runs = references(data_root, dataset, problems, pool)
    rows = [r for r in _jsonl(samples_dir / f"{dataset}.jsonl.gz") if not r["kind"].startswith("repeat_")]
    rows += scaled_slow_samples(problems, _slowest_inputs(problems, runs))
    order = {p["task_id"]: i for i, p in enumerate(problems)}
    rows.sort(key=lambda s: order[s["task_id"]])  # stable: after the task's other samples, as in build
    return _rewrite_set(samples_dir, dataset, rows)


def refresh_converters(data_root: Path, samples_dir: Path, dataset: str, workers: int) -> dict[str, int]:
    """Replace the existing set's wrong-type samples (``_CONVERTERS``) by the current rule's
    (:func:`converter_samples`, on the reference runs cached under build/), each task's where
    ``build`` puts them (after its canonical and I/O samples), and update composition.json. Returns
    the samples per kind."""
    problems = _problems(data_root, dataset)
    with Pool(workers) as pool:
        runs = references(data_root, dataset, problems, pool)
        jobs = [(p, r) for p, r in zip(problems, runs, strict=True) if r is not None]
        kept = pool.starmap(converter_samples, jobs, chunksize=1)
    new = {p["task_id"]: group for (p, _), group in zip(jobs, kept, strict=True)}
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in _jsonl(samples_dir / f"{dataset}.jsonl.gz"):
        by_task.setdefault(r["task_id"], []).append(r)
    rows: list[dict[str, Any]] = []
    for task_id, group in by_task.items():
        others = [r for r in group if r["kind"] not in _CONVERTERS]
        rows += others[:2] + new.get(task_id, []) + others[2:]
    return _rewrite_set(samples_dir, dataset, rows)


def _rewrite_set(samples_dir: Path, dataset: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Write a dataset's samples and their counts in composition.json (its build times kept)."""
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (samples_dir / f"{dataset}.jsonl.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    composition_path = samples_dir / "composition.json"
    composition = json.loads(composition_path.read_text())
    composition[dataset] |= _counts_by_kind(rows)
    composition_path.write_text(json.dumps(composition, indent=2) + "\n")
    return composition[dataset]["samples_by_kind"]


def _problems(data_root: Path, dataset: str) -> list[dict[str, Any]]:
    from diffucoder.evaluation.benchmarks import mbpp_deserialize_inputs

    rows = _jsonl(data_root / DATA_FILES[dataset])
    out = []
    for row in rows:
        base, plus = row["base_input"], row["plus_input"] or []
        if dataset == "mbpp":
            base, plus = (
                mbpp_deserialize_inputs(row["task_id"], base),
                mbpp_deserialize_inputs(row["task_id"], plus),
            )
        out.append(
            {
                "task_id": row["task_id"],
                "dataset": dataset,
                "prompt": row["prompt"],
                "canonical": row["canonical_solution"],
                "program": row["prompt"] + row["canonical_solution"],
                "entry_point": row["entry_point"],
                "atol": row["atol"],
                "base": list(base),
                "plus": list(plus),
            }
        )
    return out


def references(data_root: Path, dataset: str, problems: list[dict[str, Any]], pool: Pool) -> list:
    """Every task's reference run, computed once per data file (cached under build/, keyed by the
    file's SHA-256) and reused by later builds."""
    digest = hashlib.sha256((data_root / DATA_FILES[dataset]).read_bytes()).hexdigest()[:16]
    path = REFERENCE_CACHE / f"{dataset}-{digest}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes())
    runs = pool.map(reference_run, problems, chunksize=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(runs, protocol=pickle.HIGHEST_PROTOCOL))
    partial.replace(path)
    return runs


def build(
    data_root: Path, out_dir: Path, workers: int, datasets: list[str], seed: int = SEED
) -> dict[str, Any]:
    """Write the sample set and its composition (composition.json: per dataset the samples of each
    kind and the tasks that have one); returns the composition."""
    out_dir.mkdir(parents=True, exist_ok=True)
    composition_path = out_dir / "composition.json"
    composition: dict[str, Any] = (
        json.loads(composition_path.read_text()) if composition_path.exists() else {}
    )
    if composition.get("seed") != seed or composition.get("mutants_per_task") != MUTANTS_PER_TASK:
        composition = {}  # another set: the datasets not rebuilt now no longer belong to it
    composition |= {"seed": seed, "mutants_per_task": MUTANTS_PER_TASK}
    cpu_before = 0.0
    for dataset in datasets:
        began = time.perf_counter()
        problems = _problems(data_root, dataset)
        # the workers start before the references are in memory: each mutant's fork then copies a
        # small process, not one holding every task's outputs
        with Pool(workers) as pool:
            runs = references(data_root, dataset, problems, pool)
            jobs = [(i, p, r, seed) for i, (p, r) in enumerate(zip(problems, runs, strict=True))]
            per_task = pool.map(task_samples, jobs, chunksize=1)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples = [s for group in per_task for s in group]
        plus_s = {
            p["task_id"]: sum(r["plus_seconds"]) if r else float("inf")
            for p, r in zip(problems, runs, strict=True)
        }
        samples += slow_samples(problems, plus_s)
        samples += scaled_slow_samples(problems, _slowest_inputs(problems, runs))
        # EvalPlus reads samples in file order per task; keep each task's samples together
        order = {p["task_id"]: i for i, p in enumerate(problems)}
        samples.sort(key=lambda s: order[s["task_id"]])
        text = "".join(json.dumps(s) + "\n" for s in samples)
        (out_dir / f"{dataset}.jsonl.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
        composition[dataset] = {
            "tasks": len(problems),
            **_counts_by_kind(samples),
            "build_wall_s": round(time.perf_counter() - began, 1),
            "build_cpu_s": round(cpu.ru_utime + cpu.ru_stime - cpu_before, 1),
        }
        cpu_before = cpu.ru_utime + cpu.ru_stime
    composition_path.write_text(json.dumps(composition, indent=2) + "\n")
    return composition


def _counts_by_kind(samples: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = sorted({s["kind"] for s in samples})
    return {
        "samples": len(samples),
        "samples_by_kind": {k: sum(s["kind"] == k for s in samples) for k in kinds},
        "tasks_by_kind": {k: len({s["task_id"] for s in samples if s["kind"] == k}) for k in kinds},
    }


# --- running both sides ----------------------------------------------------------------------------


def ensure_evalplus(venv: Path = EVALPLUS_VENV) -> Path:
    """A venv with evalplus==0.3.1 from PyPI (made once, reused while it imports)."""
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([python, "-c", "import evalplus.evaluate"], capture_output=True).returncode == 0
    ):
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "evalplus==0.3.1"], check=True)
    return python


def _plain_samples(
    dataset: str, samples_dir: Path, work: Path, tasks: int | None, seed: int | None = None
) -> Path:
    """The samples as plain JSONL (EvalPlus needs a *.jsonl path); with ``tasks``, only that many
    tasks: the first ones, or a random choice drawn with ``seed`` (kept in file order)."""
    rows = _jsonl(samples_dir / f"{dataset}.jsonl.gz")
    if tasks is not None:
        every = list(dict.fromkeys(r["task_id"] for r in rows))
        keep = set(
            every[:tasks] if seed is None else random.Random(seed).sample(every, min(tasks, len(every)))
        )
        rows = [r for r in rows if r["task_id"] in keep]
    path = work / f"{dataset}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _subset_data(data_root: Path, dataset: str, task_ids: list[str], work: Path) -> Path:
    """The data file, or a copy with only ``task_ids`` (EvalPlus demands samples for every task)."""
    source = data_root / DATA_FILES[dataset]
    rows = _jsonl(source)
    kept = [row for row in rows if row["task_id"] in set(task_ids)]
    if len(kept) == len(rows):
        return source
    path = work / f"{dataset}-subset.jsonl.gz"
    if path.exists() and _jsonl(path) == kept:
        return path  # kept as it is: both sides' caches are keyed by the file's hash (--reuse-caches)
    # mtime 0: the same selection gives the same bytes
    text = "".join(json.dumps(row) + "\n" for row in kept)
    path.write_bytes(gzip.compress(text.encode(), mtime=0))
    return path


def run_evalplus(
    python: Path, dataset: str, samples: Path, data: Path, work: Path, parallel: int, rounds: int
) -> tuple[dict, float]:
    """EvalPlus 0.3.1 on ``samples``, offline on ``data``; returns its results and the last round's
    wall seconds (the first round computes and caches its expected outputs)."""
    env = {**os.environ, OVERRIDE_VARS[dataset]: str(data), "XDG_CACHE_HOME": str(work / "evalplus-cache")}
    result_path = samples.with_name(samples.stem + "_eval_results.json")
    cmd = [
        str(python),
        "-m",
        "evalplus.evaluate",
        "--dataset",
        dataset,
        "--samples",
        str(samples),
        "--parallel",
        str(parallel),
    ]
    seconds = 0.0
    for _ in range(rounds):
        result_path.unlink(missing_ok=True)
        began = time.perf_counter()
        subprocess.run(
            cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work
        )
        seconds = time.perf_counter() - began
    return json.loads(result_path.read_text()), seconds


def run_ours(
    dataset: str, samples: Path, data: Path, work: Path, parallel: int, rounds: int
) -> tuple[dict, float]:
    """``diffucoder evaluate --samples`` on the same samples and data; same warm-cache protocol."""
    bench = "humaneval_plus" if dataset == "humaneval" else "mbpp_plus"
    file_key = "humaneval_plus_file" if dataset == "humaneval" else "mbpp_plus_file"
    out = work / f"ours-{dataset}"
    cmd = [
        str(REPO / ".venv" / "bin" / "diffucoder"), "evaluate", "--samples", str(samples), "--out", str(out),
        "--benchmarks", bench, "--config", "paper-7b",
        f"evaluation.data_root={data.parent}", f"evaluation.{file_key}={data.name}",
        f"evaluation.reference_cache_uri={work / 'reference-cache'}", f"sandbox.workers={parallel}",
        f"tracking.tracking_uri=sqlite:///{work / 'mlflow.db'}",
    ]  # fmt: skip
    seconds = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
        seconds = time.perf_counter() - began
    return json.loads((out / "eval_results.json").read_text()), seconds


def compare(samples: Path, theirs: dict, ours: dict) -> dict[str, Any]:
    """Per-sample agreement on base and plus status; disagreements outside KNOWN_EVALPLUS_BUGS listed."""
    kinds: dict[str, list[str]] = {}
    for line in samples.read_text().splitlines():
        row = json.loads(line)
        kinds.setdefault(row["task_id"], []).append(row.get("kind", "?"))
    counts = {
        "samples": 0,
        "tiers": 0,
        "status_equal": 0,
        "pass_equal": 0,
        "known_bug": 0,
        "ours_pass": 0,
        "evalplus_pass": 0,
    }
    unexplained, known = [], []
    for task_id, entries in theirs["eval"].items():
        mine = ours["eval"].get(task_id, [])
        for i, entry in enumerate(entries):
            counts["samples"] += 1
            other = mine[i] if i < len(mine) else {}
            for tier in ("base", "plus"):
                a, b = entry.get(f"{tier}_status"), other.get(f"{tier}_status")
                counts["tiers"] += 1
                counts["ours_pass"] += b == "pass"
                counts["evalplus_pass"] += a == "pass"
                counts["status_equal"] += a == b
                counts["pass_equal"] += (a == "pass") == (b == "pass")
                if (a == "pass") != (b == "pass"):
                    record = {
                        "task_id": task_id,
                        "sample": i,
                        "kind": kinds[task_id][i],
                        "tier": tier,
                        "evalplus": a,
                        "ours": b,
                    }
                    if (task_id, tier) in KNOWN_EVALPLUS_BUGS:
                        counts["known_bug"] += 1
                        known.append(record)
                    else:
                        unexplained.append(record)
    by_kind: dict[str, int] = {}
    for group in kinds.values():
        for kind in group:
            by_kind[kind] = by_kind.get(kind, 0) + 1
    return {"counts": counts, "by_kind": by_kind, "unexplained": unexplained, "known_bugs": known}


def rerun_alone(
    python: Path, dataset: str, samples: Path, data_root: Path, work: Path, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The samples of ``records`` (disagreements) scored again by themselves, one at a time on each
    side; returns the records that disagree again, numbered as in ``samples``. A verdict decided by
    a wall-clock limit depends on the machine's load when each side timed its reference and the
    candidate (the same in EvalPlus); a semantic difference disagrees again."""
    wanted = {(r["task_id"], r["sample"]) for r in records}
    seen: dict[str, int] = {}
    kept, origin = [], {}
    for line in samples.read_text().splitlines():
        row = json.loads(line)
        index = seen[row["task_id"]] = seen.get(row["task_id"], -1) + 1
        if (row["task_id"], index) in wanted:
            kept.append(row)
            origin.setdefault(row["task_id"], []).append(index)
    rerun = work / f"rerun-{dataset}"
    shutil.rmtree(rerun, ignore_errors=True)
    rerun.mkdir(parents=True)
    path = rerun / f"{dataset}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    data = _subset_data(data_root, dataset, list(origin), rerun)
    theirs, _ = run_evalplus(python, dataset, path, data, rerun, 1, 1)
    ours, _ = run_ours(dataset, path, data, rerun, 1, 1)
    again = compare(path, theirs, ours)["unexplained"]
    return [r | {"sample": origin[r["task_id"]][r["sample"]]} for r in again]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(
    data_root: Path,
    datasets: list[str],
    work: Path,
    parallel: int,
    tasks: int | None,
    *,
    timed: bool,
    seed: int | None = None,
    reuse_caches: bool = False,
    samples_dir: Path = SAMPLES_DIR,
    rerun_disagreements: bool = False,
) -> dict[str, Any]:
    """Both sides on the sample set; ``timed`` runs each twice and reports the second (warm caches);
    ``reuse_caches`` keeps ``work`` from an earlier run of the same selection, so one round is warm
    (the cold round can then run apart from the timed one). With ``rerun_disagreements`` the
    disagreeing samples are scored again alone (:func:`rerun_alone`): ``unexplained`` keeps those
    that disagree again, ``unexplained_first`` the first run's. The report is also written to
    ``work``/report.json."""
    python = ensure_evalplus()
    work = work.resolve()  # the tools run with work as their cwd
    if not reuse_caches:
        shutil.rmtree(work, ignore_errors=True)  # cold caches: each side computes its references here
    work.mkdir(parents=True, exist_ok=True)
    rounds = 2 if timed and not reuse_caches else 1
    report: dict[str, Any] = {
        "machine": cpu_info(),
        "parallel": parallel,
        "warm_caches": timed or reuse_caches,
        "task_seed": seed,
    }
    for dataset in datasets:
        samples = _plain_samples(dataset, samples_dir, work, tasks, seed)
        task_ids = list(
            dict.fromkeys(json.loads(line)["task_id"] for line in samples.read_text().splitlines())
        )
        data = _subset_data(data_root, dataset, task_ids, work)
        theirs, their_s = run_evalplus(python, dataset, samples, data, work, parallel, rounds)
        ours, our_s = run_ours(dataset, samples, data, work, parallel, rounds)
        result = compare(samples, theirs, ours)
        if rerun_disagreements and result["unexplained"]:
            first = result["unexplained"]
            result["unexplained"] = rerun_alone(python, dataset, samples, data_root, work, first)
            result["unexplained_first"] = first
        report[dataset] = {"tasks": len(task_ids), **result, "evalplus_s": their_s, "ours_s": our_s}
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--data-root", type=Path, default=None, help="default: the data shipped with diffucoder")
    b.add_argument("--out", type=Path, default=SAMPLES_DIR)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--dataset", choices=["humaneval", "mbpp"], action="append")
    b.add_argument("--seed", type=int, default=SEED, help="orders each task's mutants")
    b.add_argument(
        "--refresh-sleepers",
        action="store_true",
        help="only rewrite the existing set's sleeping samples with the current sleeps (same tasks)",
    )
    b.add_argument(
        "--refresh-repeats",
        action="store_true",
        help="only replace the existing set's repeat_* samples by the current rule's (tasks chosen anew)",
    )
    b.add_argument(
        "--refresh-converters",
        action="store_true",
        help="only replace the existing set's wrong-type samples by the current rule's (judged anew)",
    )
    r = sub.add_parser("run")
    r.add_argument("--data-root", type=Path, default=None, help="default: the data shipped with diffucoder")
    r.add_argument("--dataset", choices=["humaneval", "mbpp"], action="append")
    r.add_argument("--work", type=Path, default=REPO / "build" / "evalplus-agreement")
    r.add_argument("--parallel", type=int, default=2)
    r.add_argument("--tasks", type=int, default=None, help="only N tasks of each dataset (the first N)")
    r.add_argument(
        "--seed", type=int, default=None, help="with --tasks: N tasks drawn at random with this seed"
    )
    r.add_argument("--once", action="store_true", help="one cold run per side (agreement only, no timing)")
    r.add_argument(
        "--reuse-caches",
        action="store_true",
        help="keep --work from an earlier run of the same selection: one warm, timed run per side",
    )
    r.add_argument(
        "--rerun-disagreements",
        action="store_true",
        help="score the disagreeing samples again alone, one at a time; report those that disagree again",
    )
    r.add_argument(
        "--samples-dir",
        type=Path,
        default=SAMPLES_DIR,
        help="a directory with DATASET.jsonl.gz samples (e.g. only the disagreeing ones, to rerun alone)",
    )
    args = parser.parse_args()
    if args.data_root is None:
        from diffucoder import benchmark_data

        args.data_root = Path(benchmark_data.shipped_root())
    if args.command == "build" and args.refresh_sleepers:
        for dataset in args.dataset or ["humaneval", "mbpp"]:
            print(dataset, json.dumps(refresh_sleepers(args.data_root, args.out, dataset)))
    elif args.command == "build" and args.refresh_repeats:
        for dataset in args.dataset or ["humaneval", "mbpp"]:
            print(dataset, json.dumps(refresh_repeats(args.data_root, args.out, dataset, args.workers)))
    elif args.command == "build" and args.refresh_converters:
        for dataset in args.dataset or ["humaneval", "mbpp"]:
            print(dataset, json.dumps(refresh_converters(args.data_root, args.out, dataset, args.workers)))
    elif args.command == "build":
        print(
            json.dumps(
                build(
                    args.data_root, args.out, args.workers, args.dataset or ["humaneval", "mbpp"], args.seed
                )
            )
        )
    else:
        datasets = args.dataset or ["humaneval", "mbpp"]
        report = run(
            args.data_root,
            datasets,
            args.work,
            args.parallel,
            args.tasks,
            timed=not args.once,
            seed=args.seed,
            reuse_caches=args.reuse_caches,
            samples_dir=args.samples_dir,
            rerun_disagreements=args.rerun_disagreements,
        )
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
