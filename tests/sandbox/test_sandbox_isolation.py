"""Layers checked directly in a forked child of the test process, without uid separation, so each
result shows that layer alone holds. Only signal 0 (an existence probe) is ever sent."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from diffucoder.sandbox import isolation, layout, slot_setup


def in_child(fn) -> int:
    """Run ``fn`` in a forked child; returns the child's exit code (fn's return value)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn())
        except BaseException:  # noqa: BLE001
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status)


def test_seccomp_protects_named_pids_even_for_the_same_uid():
    me = os.getpid()

    def probe() -> int:
        isolation.set_no_new_privs()
        slot_setup.compile_seccomp_filter(protected_pids=(me,)).load()
        codes = 0
        for target, bit in ((me, 1), (-me, 2), (-1, 4)):
            try:
                os.kill(target, 0)
            except PermissionError:
                codes |= bit
            except ProcessLookupError:
                pass
        try:
            os.kill(os.getpid(), 0)  # its own pid stays allowed
        except OSError:
            codes |= 8
        return codes

    assert in_child(probe) == 1 | 2 | 4


def test_seccomp_denies_network_sockets_and_user_namespaces():
    def probe() -> int:
        isolation.set_no_new_privs()
        slot_setup.compile_seccomp_filter().load()
        denied = 0
        for bit, family in ((1, socket.AF_INET), (2, socket.AF_INET6), (4, socket.AF_NETLINK)):
            try:
                socket.socket(
                    family, socket.SOCK_DGRAM if family != socket.AF_NETLINK else socket.SOCK_RAW
                ).close()
            except PermissionError:
                denied |= bit
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()  # local IPC stays allowed
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x10000000) != 0 and ctypes.get_errno() == errno.EPERM:
            denied |= 8
        return denied

    assert in_child(probe) == 1 | 2 | 4 | 8


@pytest.mark.skipif(isolation.landlock_abi() < 1, reason="kernel without landlock")
def test_landlock_confines_writes_to_the_job_dir(tmp_path):
    job_dir, outside = tmp_path / "job", tmp_path / "outside"
    job_dir.mkdir()
    outside.mkdir()

    def probe() -> int:
        isolation.set_no_new_privs()
        rules = isolation.LandlockRules(slot_setup.landlock_read_paths(layout.runtime_paths()))
        rules.restrict(writable=[str(job_dir)])
        (job_dir / "ok.txt").write_text("fine")
        try:
            (outside / "no.txt").write_text("escaped")
        except PermissionError:
            return 0
        return 1

    assert in_child(probe) == 0
    assert (job_dir / "ok.txt").exists() and not (outside / "no.txt").exists()


_FAILING_ISOLATION = """
import json, os, sys, tempfile, types
from diffucoder.sandbox import executor, isolation, judge
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.protocol import RunRequest

victim = sys.argv[1]  # "solution": the solution process of a tester job; "single": a plain job's child
real_child = executor._child

def child(slot, job, tmp, fds, out_w, err_w, body):
    # in the forked child only: the tester's solution process is the one given two pipe ends
    if (victim == "solution" and len(fds) == 2) or (victim == "single" and not job["tester"]):
        def refuse(limits):
            raise OSError("setrlimit refused")
        isolation.apply_rlimits = refuse
    real_child(slot, job, tmp, fds, out_w, err_w, body)

executor._child = child
slot = types.SimpleNamespace(uid=None, landlock=False, read_paths=[], seccomp=types.SimpleNamespace(load=lambda: None), seccomp_inherited=False,
                             tmp_root=tempfile.mkdtemp(), server_pid=os.getppid())
tests = ["assert add(1, 2) == 3"] if victim == "single" else ["def check(f):\\n    assert f(1, 2) == 3\\ncheck(add)"]
request = RunRequest(code="def add(a, b):\\n    return a + b\\n", tests=tests)
job = judge.prepare(request, None)
raw = executor.run_job(slot, judge.executor_job(job, SandboxConfig()))
print(json.dumps(judge.verdicts_from(raw, job).model_dump()))
"""


@pytest.mark.parametrize("victim", ["none", "solution", "single"])
def test_a_child_that_cannot_isolate_itself_is_an_infra_error(victim):
    """Not a crash of the program: neither a plain job's child nor a tester job's solution process
    runs anything unless every layer is in place, and the job reports why. (Run in a subprocess:
    the executor kills every descendant of the process it runs in.)"""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _FAILING_ISOLATION, victim], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    if victim == "none":
        assert result["infra_error"] is None and result["verdicts"] == ["passed"], result
    else:
        assert result["verdicts"] == [] and "setrlimit refused" in result["infra_error"], result
