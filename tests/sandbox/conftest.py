"""Fixtures for the sandbox tests: one real sandbox server on loopback per session and place.

Places: ``host`` (a subprocess of the test run, as root: code runs under per-slot uids) and
``image`` (marker ``images``, `make test-images`: the sandbox image built by the project's own
build command, run with exactly the security context manifests/base/sandbox renders: uid 10002,
read-only root, memory-backed /tmp, no capabilities, no privilege escalation, default seccomp).
Every test that uses ``sandbox_url``/``client``/``contained_client`` runs against both.

``contained_client`` is the gate for the bomb tests: it first proves, through the real server,
that the code runs as an unprivileged uid with a binding process limit and a seccomp filter; if
any of that is not true it fails loudly and no fork/memory bomb is ever sent.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox_helpers import SERVER_SECRET, containment_facts, nproc_bound, process_table, project_venv

from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import free_port, local_sandbox

# pid -> (parent pid, real uid) of every process the server's pid namespace shows
ProcessTable = Callable[[], dict[int, tuple[int, int]]]


@dataclass(frozen=True)
class SandboxServer:
    url: str
    place: str  # host | image
    processes: ProcessTable
    shell: Callable[[str], str]  # a shell command where the server runs (as its uid); its stdout


def _host_shell(command: str) -> str:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="session")
def sandbox_cfg() -> SandboxConfig:
    # a uid base of our own: other sandbox servers on this host (other test sessions) use the default
    return SandboxConfig(workers=2, queue_size=128, sandbox_uid_base=62000)


@pytest.fixture(scope="session")
def runtime_root() -> Iterator[Path]:
    """The host server runs from a venv and a copy of the package under /tmp, as from a clone
    there (CI systems clone under /tmp): exactly what bubblewrap hides behind each slot's private
    /tmp unless the layout probe binds it back. Mode 0755, like a directory `git clone` makes."""
    root = Path(tempfile.mkdtemp(prefix="diffucoder-runtime-", dir="/tmp"))
    root.chmod(0o755)
    project_venv(root)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="session", params=["host", pytest.param("image", marks=pytest.mark.images)])
def sandbox_server(request, sandbox_cfg):
    secret = {"DIFFUCODER_SANDBOX_TEST_SECRET": SERVER_SECRET}  # the server has it; code must not see it
    if request.param == "host":
        python = str(request.getfixturevalue("runtime_root") / "venv" / "bin" / "python")
        # a private TMPDIR under /tmp (mode 0700, as `mktemp -d` makes) for the server only
        server_tmp = tempfile.mkdtemp(prefix="diffucoder-tmpdir-", dir="/tmp")
        try:
            with contextlib.ExitStack() as stack:
                with pytest.MonkeyPatch.context() as env:  # inherited by the server process only
                    env.setenv("TMPDIR", server_tmp)
                    for key, value in secret.items():
                        env.setenv(key, value)
                    url = stack.enter_context(local_sandbox(sandbox_cfg, python=python))
                yield SandboxServer(url, "host", process_table, _host_shell)
        finally:
            shutil.rmtree(server_tmp)
        return
    from built_images import built, engine

    from diffucoder.k8s.pod_run import sandbox_container

    with sandbox_container(engine(), built("sandbox"), port=free_port(), env=secret) as (url, cid):

        def container_shell(command: str) -> str:
            return subprocess.run(
                [engine(), "exec", cid, "sh", "-c", command], capture_output=True, text=True, check=True
            ).stdout

        def container_processes() -> dict[int, tuple[int, int]]:
            script = "import json, os\n" + inspect.getsource(process_table)
            out = container_shell(f"python3 -c {shlex.quote(script + 'print(json.dumps(process_table()))')}")
            return {int(pid): (row[0], row[1]) for pid, row in json.loads(out).items()}

        yield SandboxServer(url, "image", container_processes, container_shell)


@pytest.fixture(scope="session")
def sandbox_url(sandbox_server) -> str:
    return sandbox_server.url


@pytest.fixture(scope="session")
def client(sandbox_url, sandbox_cfg) -> Iterator[SandboxClient]:
    with SandboxClient(sandbox_url, sandbox_cfg) as client:
        yield client


@pytest.fixture(scope="session")
def contained_client(client, sandbox_cfg, sandbox_server) -> SandboxClient:
    facts = containment_facts(client)
    problems = []
    if facts["uid"] == 0 or facts["euid"] == 0 or facts["gid"] == 0 or 0 in facts["groups"]:
        problems.append(f"code runs with root ids {facts}")
    bound = nproc_bound(client, sandbox_cfg, sandbox_server.place)
    if facts["nproc"] > bound:
        problems.append(f"RLIMIT_NPROC is {facts['nproc']}, not <= {bound}")
    if facts["seccomp"] != "2":
        problems.append(f"no seccomp filter (Seccomp: {facts['seccomp']})")
    if problems:
        pytest.fail(
            "CONTAINMENT NOT VERIFIED - refusing to run bomb tests: " + "; ".join(problems), pytrace=False
        )
    return client
