"""Pipeline overheads: IR compile time, what running a step as a kfp.local task costs over
calling its library function directly (the baseline, measured in the same run), and what a heavy
task's process pays to import its modules and to exit, with and without diffucoder.preload.

    python benchmarks/bench_pipeline.py [--tasks 5] [--repeats 3]

Prints one JSON object to stdout; logs go to stderr. The step timed through kfp.local is the
cheapest real one (`diffucoder.steps.resolve_config` on the tiny preset), so the difference is KFP's
own cost per task: a subprocess, interpreter start, imports and executor I/O. The heavy-process
numbers import a training step's modules (`diffucoder.steps.TRAIN_MODULES`) in a fresh interpreter,
plainly (the baseline) or through `preload`, and time the imports and the interpreter's exit.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kfp import dsl, local

from diffucoder.images import image_ref
from diffucoder.tracking import git_sha
from diffucoder.train.precision import cpu_flags, cpu_model_name

REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")

# a fresh interpreter: import the modules, print how long that took and when the script ended
HEAVY_PROCESS = """
import importlib, sys, time
from diffucoder.steps import TRAIN_MODULES
from diffucoder.preload import preload
t0 = time.time()
if sys.argv[1] == "preload":
    preload(*TRAIN_MODULES)
else:
    for name in TRAIN_MODULES:
        importlib.import_module(name)
print(time.time() - t0, time.time())
"""


@dsl.component(base_image=image_ref("tools"), install_kfp_package=False)
def resolve_step(preset: str) -> str:
    from diffucoder import steps

    return steps.resolve_config(preset, []).fingerprint()


def heavy_process(mode: str) -> tuple[float, float]:
    """(import seconds, exit seconds) of one fresh interpreter loading a training step's modules."""
    proc = subprocess.run(
        [sys.executable, "-c", HEAVY_PROCESS, mode], capture_output=True, text=True, check=True
    )
    ended = time.time()
    import_s, script_end = (float(x) for x in proc.stdout.split()[-2:])
    return import_s, ended - script_end


def heavy_process_medians(mode: str, repeats: int) -> dict[str, float]:
    runs = [heavy_process(mode) for _ in range(repeats)]
    return {
        "import_s": round(statistics.median(r[0] for r in runs), 2),
        "exit_s": round(statistics.median(r[1] for r in runs), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="fresh interpreters per heavy-process mode")
    args = parser.parse_args()
    from diffucoder_kfp.compile import compile_pipeline

    from diffucoder import steps

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        compile_pipeline(Path(tmp) / "ir.yaml")
        compile_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for _ in range(args.tasks):
            steps.resolve_config("tiny", []).fingerprint()
        direct_s = (time.perf_counter() - t0) / args.tasks

        local.init(local.SubprocessRunner(use_venv=False), pipeline_root=tmp)
        resolve_step(preset="tiny")  # warm-up (first import of the library from disk)
        t0 = time.perf_counter()
        for _ in range(args.tasks):
            resolve_step(preset="tiny")
        task_s = (time.perf_counter() - t0) / args.tasks
    heavy_process("plain")  # warm-up: the modules' files into the page cache
    plain = heavy_process_medians("plain", args.repeats)
    preloaded = heavy_process_medians("preload", args.repeats)
    flags = cpu_flags()
    print(
        json.dumps(
            {
                "name": "pipeline_overheads",
                "device": "cpu",
                "config": {"tasks": args.tasks, "preset": "tiny"},
                "metric": "kfp_local_task_overhead_s",
                "value": round(task_s - direct_s, 3),
                "unit": "s",
                "compile_s": round(compile_s, 2),
                "kfp_local_task_s": round(task_s, 3),
                "baseline_direct_call_s": round(direct_s, 4),
                "train_process_preloaded": preloaded,
                "train_process_baseline_plain_imports": plain,
                "cpu": cpu_model_name(),
                "flags": {flag: flag in flags for flag in REPORTED_FLAGS},
                "git_sha": git_sha(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
