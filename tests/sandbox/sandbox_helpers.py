"""Shared helpers of the sandbox tests (a module of its own: every test dir has a conftest.py, so
``from conftest import ...`` would pick whichever was imported first)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import diffucoder
from diffucoder.sandbox.client import Job, SandboxClient
from diffucoder.sandbox.config import SandboxConfig

FENCE = "```"
SERVER_SECRET = "diffucoder-test-secret-" + secrets.token_hex(8)

HONEST = Job(
    code="def add(a, b):\n    return a + b\n", tests=["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
)

CONTAINMENT_PROBE = """
import os, resource
def facts():
    fds = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))
    status = open('/proc/self/status').read()
    seccomp = [l.split()[1] for l in status.splitlines() if l.startswith('Seccomp:')][0]
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    return {'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), 'groups': os.getgroups(),
            'nproc': hard, 'seccomp': seccomp, 'no_new_privs': [l.split()[1] for l in status.splitlines()
            if l.startswith('NoNewPrivs:')][0], 'fds': fds}
"""


def containment_facts(client: SandboxClient) -> dict:
    result = client.run(Job(code=CONTAINMENT_PROBE, entry_point="facts", inputs=[[]]))
    assert result.infra_error is None, result.infra_error
    assert result.verdicts == ["passed"], (result.verdicts, result.program_error, result.stderr)
    return result.outputs[0]


# threads of the server and its slots that a shared-uid process limit may sit above the jobs' budgets
SERVICE_TASKS = 64


def nproc_bound(client: SandboxClient, cfg: SandboxConfig, place: str) -> int:
    """The highest RLIMIT_NPROC the code may get. Per-slot uids (host): the job's budget. One uid
    shared with the server (the image): the limit counts from what the uid holds, so at most every
    slot's budget on top of the server's and the slots' own threads."""
    if place == "image":
        return cfg.max_processes * client.health()["workers"] + SERVICE_TASKS
    return cfg.max_processes


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, real uid) of every process in this pid namespace. Self-contained (its
    source also runs inside the sandbox container, whose processes the host's pids do not name)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            table[int(name)] = (int(fields["PPid"].split()[0]), int(fields["Uid"].split()[0]))
    return table


def assert_honest(client: SandboxClient) -> None:
    """The server still answers an honest job correctly."""
    result = client.run(HONEST)
    assert result.infra_error is None, result.infra_error
    assert result.verdicts == ["passed", "passed"], (result.verdicts, result.program_error, result.stderr)


# Reference cases from the issue: correct 1.0/1.0, syntax error 0/0.5, missing fence 0/0, two blocks 0/0.
GOOD = f"Here is the code to solve this problem:\n{FENCE}python\ndef add(a, b):\n    return a + b\n{FENCE}\n"
SYNTAX = f"{FENCE}python\ndef add(a, b)\n    return a + b\n{FENCE}\n"
NO_FENCE = "def add(a, b):\n    return a + b\n"
TWO_BLOCKS = f"{FENCE}python\nx = 1\n{FENCE}\n{FENCE}python\ndef add(a, b):\n    return a + b\n{FENCE}\n"


def project_venv(root: Path) -> Path:
    """A venv under ``root`` laid out like a fresh clone's, and its python.

    root/venv holds the interpreter link and its own site-packages; the package source is copied to
    root/src and put on sys.path by a .pth line (what an editable install of a src/ layout writes);
    the third-party packages come from this environment's site-packages through a second .pth line.
    """
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shutil.copytree(
        Path(diffucoder.__file__).parent,
        root / "src" / "diffucoder",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (venv_site_packages(root) / "project.pth").write_text("\n".join([str(root / "src"), *deps]) + "\n")
    return venv / "bin" / "python"


def venv_site_packages(root: Path) -> Path:
    (site,) = (root / "venv" / "lib").glob("python3*/site-packages")
    return site
