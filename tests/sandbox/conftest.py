"""Fixtures for the sandbox tests: one real sandbox server (subprocess on loopback) per session.

``contained_client`` is the gate for the bomb tests: it first proves, through the real server,
that the code runs as an unprivileged uid with a binding process limit and a seccomp filter; if
any of that is not true it fails loudly and no fork/memory bomb is ever sent.
"""

from __future__ import annotations

import os

import pytest
from sandbox_helpers import SERVER_SECRET, containment_facts

from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import local_sandbox


@pytest.fixture(scope="session")
def sandbox_cfg() -> SandboxConfig:
    # a uid base of our own: other sandbox servers on this host (other test sessions) use the default
    return SandboxConfig(workers=2, queue_size=128, sandbox_uid_base=62000)


@pytest.fixture(scope="session")
def sandbox_url(sandbox_cfg):
    os.environ["DIFFUCODER_SANDBOX_TEST_SECRET"] = (
        SERVER_SECRET  # the server inherits it; the code must not see it
    )
    try:
        with local_sandbox(sandbox_cfg) as url:
            yield url
    finally:
        os.environ.pop("DIFFUCODER_SANDBOX_TEST_SECRET", None)


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
