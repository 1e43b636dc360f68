"""benchmarks/bench_gpu.py runs end to end on CPU with a tiny model, so the GPU benchmark cannot rot."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_bench_gpu_tiny_cpu_run(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    import bench_gpu

    result = bench_gpu.main(["--tiny", "--steps", "1", "--precision", "fp32"])
    for step in ("stage3", "grpo"):
        assert result[step]["tokens_per_s"] > 0 and 0 < result[step]["mfu"] < 1
    assert result["zero_stage"] == 3 and result["model"]["hidden_size"] == 64
    sys.modules.pop("bench_gpu", None)
