"""Pipeline overheads: IR compile time, and what running a step as a kfp.local task costs over
calling its library function directly (the baseline, measured in the same run).

    python benchmarks/bench_pipeline.py [--tasks 5]

Prints one JSON object to stdout; logs go to stderr. The step timed is the cheapest real one
(`pipeline_steps.resolve_config` on the tiny preset), so the difference is KFP's own cost per task:
a subprocess, interpreter start, imports and executor I/O.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kfp import dsl, local  # noqa: E402

from diffucoder.images import image_ref  # noqa: E402
from diffucoder.tracking import git_sha  # noqa: E402


@dsl.component(base_image=image_ref("tools"), install_kfp_package=False)
def resolve_step(preset: str) -> str:
    from diffucoder import pipeline_steps as steps

    return steps.resolve_config(preset, []).fingerprint()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args()
    from diffucoder import pipeline_steps as steps
    from pipelines.compile import compile_pipeline

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
                "git_sha": git_sha(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
