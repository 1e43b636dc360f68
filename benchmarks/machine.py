"""The machine a benchmark ran on, printed into its JSON: CPU model, cores and the SIMD flags that
decide numpy's and the Rust kernels' speed."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

_FLAGS = ("avx2", "avx512f", "avx512dq", "avx512bw", "avx512_bf16", "amx_tile", "sha_ni", "bmi2")


def cpu_info() -> dict:
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "flags": [f for f in _FLAGS if f in flags],
        "python": platform.python_version(),
    }


def git_sha(tree: str | Path | None = None) -> str:
    """The short commit of the checkout holding ``tree`` (default: this script's), or "unknown"
    where that is no git checkout (e.g. a ``git archive`` extraction)."""
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(tree) if tree else Path(__file__).parent,
    )
    return out.stdout.strip() or "unknown"
