"""What `diffucoder evaluate --samples` pays before and around the scoring: the modules its process
imports and the wall time of a small run.

Prints JSON: the import time of every top-level import of the CLI process (``python -X importtime``,
so imports done lazily inside functions count too; the ten largest and the sum), whether torch,
transformers or matplotlib were loaded, and the wall time of the whole command (median of
``--repeats``) on the canonical solutions of the first ``--tasks`` HumanEval+ tasks. The references
come from a cache that an untimed first run fills, so the timed runs cost start-up, the sandbox
server, the samples' execution, the report and the MLflow run.

    .venv/bin/python benchmarks/bench_eval_startup.py [--tasks 5] [--repeats 3] [--src DIR]

``--src``: a source tree's ``src/`` whose ``diffucoder`` is imported instead of the installed one,
e.g. another commit's (``git worktree add DIR COMMIT``, then ``--src DIR/src``): the same-run
baseline. The JSON's ``commit`` is the commit of the tree measured (``unknown`` for a tree outside
git).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_info, git_sha

from diffucoder import benchmark_data

HEAVY = ("torch", "transformers", "matplotlib")
# "import time: <self us> | <cumulative us> | <name, indented by nesting depth>"
IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")


def write_samples(path: Path, tasks: int) -> None:
    data = Path(benchmark_data.shipped_root()) / benchmark_data.HUMANEVAL_PLUS
    rows = [json.loads(line) for line in gzip.decompress(data.read_bytes()).splitlines()][:tasks]
    path.write_text(
        "".join(
            json.dumps({"task_id": r["task_id"], "completion": r["canonical_solution"]}) + "\n" for r in rows
        )
    )


def command(work: Path, samples: Path, out: str, tasks: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "diffucoder.cli",
        "evaluate",
        "--samples",
        str(samples),
        "--out",
        str(work / out),
        "--config",
        "paper-7b",  # every input of every tier, as EvalPlus scores
        f"evaluation.max_problems={tasks}",
        f"evaluation.reference_cache_uri={work / 'references'}",
        f"tracking.tracking_uri=sqlite:///{work / 'mlflow.db'}",
    ]


def run(cmd: list[str], env: dict[str, str], *extra: str) -> tuple[float, str]:
    """Seconds the command took, and its stderr; a failed run stops the benchmark with its output."""
    started = time.perf_counter()
    proc = subprocess.run([cmd[0], *extra, *cmd[1:]], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stderr


def import_times(stderr: str) -> dict[str, float]:
    """Cumulative seconds of each top-level import (nesting depth 0) in ``-X importtime`` output."""
    times: dict[str, float] = {}
    for line in stderr.splitlines():
        match = IMPORTTIME.match(line)
        if match and not match.group(3):
            times[match.group(4)] = times.get(match.group(4), 0.0) + int(match.group(2)) / 1e6
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--src", help="import diffucoder from this src/ dir (the baseline)")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(args.src).resolve()), env.get("PYTHONPATH")])
        )
    with tempfile.TemporaryDirectory(prefix="bench-eval-startup-") as tmp:
        work = Path(tmp)
        samples = work / "samples.jsonl"
        write_samples(samples, args.tasks)
        run(command(work, samples, "warm", args.tasks), env)  # references, MLflow's schema
        _, stderr = run(command(work, samples, "importtime", args.tasks), env, "-X", "importtime")
        imports = import_times(stderr)
        walls = [run(command(work, samples, f"run{i}", args.tasks), env)[0] for i in range(args.repeats)]

    loaded = {m.group(4).split(".")[0] for m in map(IMPORTTIME.match, stderr.splitlines()) if m}
    largest = sorted(imports.items(), key=lambda kv: -kv[1])[:10]
    print(
        json.dumps(
            {
                "diffucoder": str(Path(args.src).resolve()) if args.src else "installed",
                "tasks": args.tasks,
                "import_s": round(sum(imports.values()), 2),
                "largest_imports_s": {name: round(s, 2) for name, s in largest},
                "heavy_loaded": [name for name in HEAVY if name in loaded],
                "wall_s": round(statistics.median(walls), 2),
                "wall_runs_s": [round(w, 2) for w in walls],
                "load_avg": os.getloadavg(),
                "machine": cpu_info(),
                "commit": git_sha(args.src) if args.src else git_sha(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
