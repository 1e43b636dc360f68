"""Images for the ``images`` tests, built once per session by the project's own build command.

Built on the local Debian base by default (project machines reach no container registry);
``DIFFUCODER_IMAGE_BASE=registry`` builds on the bases pinned in images/versions.yaml instead.
Tagged under ``localhost/diffucoder`` (never the release registry's names), which
``diffucoder pipeline run-local --runner docker --image-registry localhost/diffucoder`` can use.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffucoder.image_build import BuildEnvironmentError, detect_engine
from diffucoder.images import image_ref

REPO_ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "localhost/diffucoder"


@functools.cache
def engine() -> str:
    try:
        return detect_engine().name
    except BuildEnvironmentError as exc:
        pytest.fail(f"the images tests need a container engine: {exc}", pytrace=False)


@functools.cache
def built(target: str) -> str:
    """The image reference of ``target`` after building it (layer cache makes rebuilds cheap)."""
    base = os.environ.get("DIFFUCODER_IMAGE_BASE", "local")
    cmd = [sys.executable, "-m", "diffucoder.images", "build", "--registry", REGISTRY, target]
    cmd += ["--local-base"] if base == "local" else []
    cmd += ["--engine", engine()]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"building {target} failed:\n{(proc.stdout + proc.stderr)[-4000:]}", pytrace=False)
    return image_ref(target, REGISTRY)


def run_in(image: str, *command: str, user: str | None = None) -> str:
    """``command`` inside a throwaway container of ``image`` (no network); its stdout."""
    cmd = [engine(), "run", "--rm", "--network=none", "--entrypoint", command[0]]
    cmd += ["--user", user] if user else []
    proc = subprocess.run([*cmd, image, *command[1:]], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{command} in {image}: {proc.stderr[-2000:]}"
    return proc.stdout


def inspect(image: str) -> dict:
    out = subprocess.run([engine(), "image", "inspect", image], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]
