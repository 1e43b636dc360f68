"""Fixtures for the sandbox tests: one real sandbox server (subprocess on loopback) per session.

``contained_client`` is the gate for the bomb tests: it first proves, through the real server,
that the code runs as an unprivileged uid with a binding process limit and a seccomp filter; if
any of that is not true it fails loudly and no fork/memory bomb is ever sent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import SERVER_SECRET, containment_facts, project_venv

from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import local_sandbox


@pytest.fixture(scope="session")
def sandbox_cfg() -> SandboxConfig:
    # a uid base of our own: other sandbox servers on this host (other test sessions) use the default
    return SandboxConfig(workers=2, queue_size=128, sandbox_uid_base=62000)


@pytest.fixture(scope="session")
def runtime_root() -> Iterator[Path]:
    """The session server runs from a venv and a copy of the package under /tmp, as from a clone
    there (CI systems clone under /tmp): exactly what bubblewrap hides behind each slot's private
    /tmp unless the layout probe binds it back. Mode 0755, like a directory `git clone` makes."""
    root = Path(tempfile.mkdtemp(prefix="diffucoder-runtime-", dir="/tmp"))
    root.chmod(0o755)
    project_venv(root)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="session")
def sandbox_url(sandbox_cfg, runtime_root):
    os.environ["DIFFUCODER_SANDBOX_TEST_SECRET"] = (
        SERVER_SECRET  # the server inherits it; the code must not see it
    )
    # a private TMPDIR under /tmp (mode 0700, as `mktemp -d` makes) for the server only
    server_tmp = tempfile.mkdtemp(prefix="diffucoder-tmpdir-", dir="/tmp")
    try:
        with contextlib.ExitStack() as stack:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("TMPDIR", server_tmp)  # inherited by the server process only
                python = str(runtime_root / "venv" / "bin" / "python")
                url = stack.enter_context(local_sandbox(sandbox_cfg, python=python))
            yield url
    finally:
        os.environ.pop("DIFFUCODER_SANDBOX_TEST_SECRET", None)
        shutil.rmtree(server_tmp)


@pytest.fixture(scope="session")
def client(sandbox_url, sandbox_cfg) -> SandboxClient:
    return SandboxClient(sandbox_url, sandbox_cfg)


@pytest.fixture(scope="session")
def contained_client(client, sandbox_cfg) -> SandboxClient:
    facts = containment_facts(client)
    problems = []
    if facts["uid"] == 0 or facts["euid"] == 0 or facts["gid"] == 0 or 0 in facts["groups"]:
        problems.append(f"code runs with root ids {facts}")
    if facts["nproc"] > sandbox_cfg.max_processes:
        problems.append(f"RLIMIT_NPROC is {facts['nproc']}, not <= {sandbox_cfg.max_processes}")
    if facts["seccomp"] != "2":
        problems.append(f"no seccomp filter (Seccomp: {facts['seccomp']})")
    if problems:
        pytest.fail(
            "CONTAINMENT NOT VERIFIED - refusing to run bomb tests: " + "; ".join(problems), pytrace=False
        )
    return client
