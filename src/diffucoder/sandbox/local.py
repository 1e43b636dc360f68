"""Start a sandbox server as a subprocess for local runs and tests.

``with local_sandbox() as url:`` runs ``diffucoder sandbox serve`` on a free loopback port, waits
until /healthz answers, yields the URL, and stops the server (SIGTERM, then SIGKILL) on exit; on
Linux the server also gets SIGTERM when its parent dies without that cleanup. A subprocess rather
than a thread so the server's work never competes with the caller for the GIL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from diffucoder.sandbox.client import SandboxUnavailable
from diffucoder.sandbox.config import SandboxConfig


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the parent dies (PR_SET_PDEATHSIG).

    A caller killed without running its ``finally`` (SIGKILL, or SIGTERM with Python's default
    handler, as when a pipeline task is cancelled) would otherwise leave the server running.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_sandbox(
    cfg: SandboxConfig | None = None,
    insecure_dev: bool = False,
    startup_timeout_s: float = 60.0,
    *,
    python: str | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Serve on a loopback port for the duration of the block; ``python`` is the interpreter that
    runs the server and its slots (default: this one), e.g. a dedicated sandbox venv; ``port``
    (default: a free one) lets a server come back where its clients expect it."""
    cfg = cfg or SandboxConfig()
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    # every field travels as an override, so server-side limits (processes, output, files) match cfg
    overrides = [f"{k}={json.dumps(v)}" for k, v in cfg.model_dump(mode="json").items()]
    cmd = [
        python or sys.executable,
        "-m",
        "diffucoder.cli",
        "sandbox",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *overrides,
    ]
    if insecure_dev:
        cmd.append("--insecure-dev")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
        try:
            _wait_healthy(url, proc, log, startup_timeout_s)
            yield url
        finally:
            _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen, log, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise SandboxUnavailable(f"local sandbox server exited with code {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    _stop(proc)
    raise SandboxUnavailable(f"local sandbox server at {url} did not become healthy in {timeout_s:.0f}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
