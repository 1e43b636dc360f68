"""Agreement with EvalPlus 0.3.1 itself, sample for sample, and both sides' wall time.

Two commands:

    # build the hard sample set (committed under tests/evaluation/data/evalplus_hard/)
    .venv/bin/python benchmarks/evalplus_agreement.py build [--data-root DIR]
    # install evalplus==0.3.1 into its own venv (cached in build/), score the set with it
    # (offline, on the same data files) and with `diffucoder evaluate --samples`, compare
    .venv/bin/python benchmarks/evalplus_agreement.py run [--data-root DIR] [--dataset humaneval] [--once] [--tasks N [--seed S]]

The sample set, per task: the canonical solution; a single-token mutant of it that passes the base
inputs and fails the plus inputs (where one of the first mutants does); the canonical solution
returning a wrong type (list <-> tuple, numpy values, a namedtuple, float <-> int, str -> bytes) where
that changes an output; printing megabytes (every 8th task) or exiting at import (every 16th); and,
for a few tasks with a clear margin, programs slower than the reference near each time limit (the
per-input floor, 4x the reference's time, the tier's wall cap). ``run`` prints one JSON object: per
dataset the agreement counts, the disagreements, and both sides' wall time with warm caches
(EvalPlus's expected outputs and our reference cache both computed by a first run).

EvalPlus 0.3.1 is wrong in two places, the only disagreements allowed (``KNOWN_EVALPLUS_BUGS``):
HumanEval/32 fails every sample (its oracle ``continue``s without recording the pass), and the plus
tier of Mbpp/255 fails every sample (an input's output exceeds the 4 GiB cap in EvalPlus's worker,
which inherits the parent's loaded expected outputs).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import tokenize
from multiprocessing import Pool
from pathlib import Path
from typing import Any

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

_SWAPS = {
    "+": "-", "-": "+", "*": "//", "//": "*", "<": "<=", "<=": "<", ">": ">=", ">=": ">",
    "==": "!=", "!=": "==", "and": "or", "or": "and", "True": "False", "False": "True",
    "min": "max", "max": "min",
}  # fmt: skip

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


def single_token_mutants(source: str, limit: int, prefix: str = "") -> list[str]:
    """Variants of ``source`` that differ in one operator, name or integer literal and still compile
    after ``prefix`` (HumanEval's solutions are bodies of the prompt's function); the first ``limit``."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    mutants = []
    for tok in tokens:
        replacement = _SWAPS.get(tok.string)
        if replacement is None and tok.type == tokenize.NUMBER and tok.string.isdigit():
            replacement = str(int(tok.string) + 1)
        if replacement is None or tok.type not in (tokenize.OP, tokenize.NAME, tokenize.NUMBER):
            continue
        start = offsets[tok.start[0] - 1] + tok.start[1]
        end = offsets[tok.end[0] - 1] + tok.end[1]
        mutant = source[:start] + replacement + source[end:]
        try:
            compile(prefix + mutant, "<mutant>", "exec")
        except SyntaxError:
            continue
        mutants.append(mutant)
        if len(mutants) >= limit:
            break
    return mutants


def _run_tiers(program: str, entry_point: str, tiers: list[list], seconds: float) -> list[list] | None:
    """Outputs of ``program`` on each tier's inputs in a forked child (None when it fails or hangs)."""
    import pickle

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
            signal.alarm(int(seconds))
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
            namespace: dict[str, Any] = {}
            exec(program, namespace)  # noqa: S102 - mutants of trusted canonical solutions, time/memory capped
            import copy

            outputs = [[namespace[entry_point](*copy.deepcopy(a)) for a in tier] for tier in tiers]
            data = pickle.dumps(outputs)
        except BaseException:  # noqa: BLE001
            data = b""
        with os.fdopen(write, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    try:
        return pickle.loads(data) if data else None
    except Exception:  # noqa: BLE001
        return None


def _tier_passes(
    outputs: list, expected: list, inputs: list, atol: float, entry_point: str, dataset: str
) -> bool:
    from diffucoder.sandbox.evalplus import TierComparison

    cmp = TierComparison(
        expected=expected, inputs=inputs, atol=atol, entry_point=entry_point, dataset=dataset
    )
    return len(outputs) == len(expected) and all(cmp.passes(i, o) for i, o in enumerate(outputs))


def _task_samples(job: tuple) -> list[dict[str, Any]]:
    """Every sample of one task (runs in a worker process)."""
    index, problem = job
    program, ep = problem["program"], problem["entry_point"]
    tiers = [problem["base"], problem["plus"]]
    reference = _run_tiers(program, ep, tiers, 120)
    samples = [{"task_id": problem["task_id"], "solution": program, "kind": "canonical"}]
    if reference is None:
        return samples
    if problem["dataset"] == "mbpp" and ep in ("check_str", "text_match_three", "text_starta_endb"):
        reference = [[o is not None for o in tier] for tier in reference]
    flat = [o for tier in reference for o in tier]
    for name, converter in _CONVERTERS.items():
        if _converter_changes(converter, flat[:200]):
            samples.append(
                {"task_id": problem["task_id"], "solution": _wrapped(program, ep, converter), "kind": name}
            )
    args = (problem["atol"], ep, problem["dataset"])
    for mutant in single_token_mutants(problem["canonical"], limit=25, prefix=problem["prompt"]):
        outputs = _run_tiers(problem["prompt"] + mutant, ep, tiers, 20)
        if outputs is None:
            continue
        base_ok = _tier_passes(outputs[0], reference[0], tiers[0], *args)
        if base_ok and not _tier_passes(outputs[1], reference[1], tiers[1], *args):
            samples.append(
                {"task_id": problem["task_id"], "solution": problem["prompt"] + mutant, "kind": "mutant"}
            )
            break
    if index % 8 == 0:
        noisy = f"print('x' * 2_000_000)\n{program}\n\n_quiet = {ep}\n\ndef {ep}(*a, **k):\n"
        noisy += "    print('y' * 100_000)\n    return _quiet(*a, **k)\n"
        samples.append({"task_id": problem["task_id"], "solution": noisy, "kind": "prints_megabytes"})
    if index % 16 == 0:
        samples.append(
            {
                "task_id": problem["task_id"],
                "solution": "import sys\nsys.exit(0)\n" + program,
                "kind": "sys_exit",
            }
        )
        samples.append(
            {
                "task_id": problem["task_id"],
                "solution": "import os\nos._exit(0)\n" + program,
                "kind": "os_exit",
            }
        )
    return samples


def _slow(program: str, ep: str, body: str, kind: str, task_id: str) -> dict[str, Any]:
    source = f"import time\n{program}\n\n_plain = {ep}\n_calls = [0]\n\ndef {ep}(*a, **k):\n{body}"
    return {"task_id": task_id, "solution": source, "kind": kind}


def slow_samples(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Programs near each time limit, on tasks chosen so the margin is clear on a loaded machine:
    the 1 s per-input floor (0.6 s: pass, 1.6 s: fail), and the tier's wall cap (0.45 s per call:
    a tier of < 120 inputs stays under 62 s, one of > 150 runs past it)."""
    out = []
    small = [p for p in problems if 3 <= len(p["base"]) <= 8 and len(p["plus"]) >= 20][:2]
    for p in small:
        first = "    _calls[0] += 1\n    if _calls[0] == 1:\n        time.sleep({s})\n    return _plain(*a, **k)\n"
        out.append(
            _slow(p["program"], p["entry_point"], first.format(s=0.6), "slow_first_call_0.6s", p["task_id"])
        )
        out.append(
            _slow(p["program"], p["entry_point"], first.format(s=1.6), "slow_first_call_1.6s", p["task_id"])
        )
    every = "    time.sleep(0.45)\n    return _plain(*a, **k)\n"
    under = next((p for p in problems if 90 <= len(p["plus"]) <= 115 and len(p["base"]) <= 10), None)
    over = next((p for p in problems if 150 <= len(p["plus"]) <= 250 and len(p["base"]) <= 10), None)
    for p, kind in ((under, "slow_every_call_under_cap"), (over, "slow_every_call_over_cap")):
        if p is not None:
            out.append(_slow(p["program"], p["entry_point"], every, kind, p["task_id"]))
    return out


def scaled_slow_samples(problems: list[dict[str, Any]], slow_tasks: list[str]) -> list[dict[str, Any]]:
    """Reference-scaled limits: the canonical call repeated 2x (under 4x the reference) and 10x
    (over it on the inputs whose reference time is well above the 0.25 s where the floor stops)."""
    out = []
    for p in problems:
        if p["task_id"] in slow_tasks:
            for times in (2, 10):
                body = (
                    f"    for _ in range({times - 1}):\n        _plain(*a, **k)\n    return _plain(*a, **k)\n"
                )
                out.append(_slow(p["program"], p["entry_point"], body, f"repeat_{times}x", p["task_id"]))
    return out


# Tasks whose slowest reference input takes > 0.3 s here (HumanEval/15, /59, /83; Mbpp/389, /599)
SCALED_SLOW_TASKS = ["HumanEval/15", "HumanEval/59", "HumanEval/83", "Mbpp/389", "Mbpp/599"]


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


def build(data_root: Path, out_dir: Path, workers: int, datasets: list[str]) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for dataset in datasets:
        problems = _problems(data_root, dataset)
        with Pool(workers) as pool:
            per_task = pool.map(_task_samples, list(enumerate(problems)), chunksize=1)
        samples = [s for group in per_task for s in group]
        samples += slow_samples(problems) + scaled_slow_samples(problems, SCALED_SLOW_TASKS)
        # EvalPlus reads samples in file order per task; keep each task's samples together
        order = {p["task_id"]: i for i, p in enumerate(problems)}
        samples.sort(key=lambda s: order[s["task_id"]])
        with gzip.open(out_dir / f"{dataset}.jsonl.gz", "wt") as f:
            f.writelines(json.dumps(s) + "\n" for s in samples)
        counts[dataset] = len(samples)
    return counts


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


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def machine() -> dict[str, str]:
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "flags": ",".join(wanted),
        "python": platform.python_version(),
    }


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
) -> dict[str, Any]:
    """Both sides on the sample set; ``timed`` runs each twice and reports the second (warm caches);
    ``reuse_caches`` keeps ``work`` from an earlier run of the same selection, so one round is warm
    (the cold round can then run apart from the timed one)."""
    python = ensure_evalplus()
    work = work.resolve()  # the tools run with work as their cwd
    if not reuse_caches:
        shutil.rmtree(work, ignore_errors=True)  # cold caches: each side computes its references here
    work.mkdir(parents=True, exist_ok=True)
    rounds = 2 if timed and not reuse_caches else 1
    report: dict[str, Any] = {
        "machine": machine(),
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
        report[dataset] = {
            "tasks": len(task_ids),
            **compare(samples, theirs, ours),
            "evalplus_s": their_s,
            "ours_s": our_s,
        }
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
    args = parser.parse_args()
    if args.data_root is None:
        from diffucoder import benchmark_data

        args.data_root = Path(benchmark_data.shipped_root())
    if args.command == "build":
        print(
            json.dumps(build(args.data_root, args.out, args.workers, args.dataset or ["humaneval", "mbpp"]))
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
        )
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
