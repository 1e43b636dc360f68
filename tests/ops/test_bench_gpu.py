"""benchmarks/bench_gpu.py runs end to end on CPU with a tiny model, so the GPU benchmark cannot rot.

It runs as its own process, as on a GPU machine: DeepSpeed's ZeRO-3 engine initialises a process
group and wraps torch functions for the whole process, which must not leak into other tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_tiny_cpu_run():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--tiny", "--steps", "1", "--precision", "fp32"],
        env={**env, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    result = json.loads("\n".join(lines[len(lines) - 1 - lines[::-1].index("{") :]))  # the last JSON object
    for step in ("stage3", "grpo"):
        assert result[step]["tokens_per_s"] > 0 and 0 < result[step]["mfu"] < 1
    assert result["zero_stage"] == 3 and result["model"]["hidden_size"] == 64
