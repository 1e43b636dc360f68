"""How long the offline deployment checks take: kustomize rendering per overlay and building a
TrainJob. Baseline in the same run: `kubectl version --client` (the process start-up cost that
every `kubectl kustomize` pays). Prints one JSON object; logs go to stderr.

    .venv/bin/python benchmarks/bench_k8s.py
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import git_sha

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 5


def _median_seconds(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up (page cache, imports)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _kubectl(*args: str) -> None:
    subprocess.run(["kubectl", *args], check=True, capture_output=True)


def main() -> int:
    from diffucoder.config import load_config
    from diffucoder.k8s.config import KubernetesConfig
    from diffucoder.k8s.trainjob import StageJob, build_trainjob

    cfg, k8s = load_config("paper-7b"), KubernetesConfig()
    job = StageJob("pretrain", "s3://b/data", "s3://b/out", run_id="bench")
    results = {"baseline_kubectl_start_s": _median_seconds(lambda: _kubectl("version", "--client"))}
    for overlay in ("local", "gpu-cloud"):
        path = str(ROOT / "manifests" / "overlays" / overlay)
        results[f"kustomize_{overlay}_s"] = _median_seconds(lambda p=path: _kubectl("kustomize", p))
    results["build_trainjob_ms"] = 1000 * _median_seconds(lambda: build_trainjob(job, cfg, k8s), repeats=200)
    print(
        json.dumps(
            {
                "name": "bench_k8s",
                "device": f"cpu ({platform.machine()}, {platform.processor() or 'unknown'})",
                "config": {"repeats": REPEATS, "preset": "paper-7b"},
                "metric": "median wall time",
                "value": results,
                "unit": "s (ms where named)",
                "git_sha": git_sha(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
