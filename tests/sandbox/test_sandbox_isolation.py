"""Layers checked directly in a forked child of the test process, without uid separation, so each
result shows that layer alone holds. Only signal 0 (an existence probe) is ever sent."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from diffucoder.sandbox import isolation, layout


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
        isolation.compile_seccomp_filter(protected_pids=(me,)).load()
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
        isolation.compile_seccomp_filter().load()
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
        isolation.landlock_restrict(
            writable=[str(job_dir)], readable=isolation.landlock_read_paths(layout.runtime_paths())
        )
        (job_dir / "ok.txt").write_text("fine")
        try:
            (outside / "no.txt").write_text("escaped")
        except PermissionError:
            return 0
        return 1

    assert in_child(probe) == 0
    assert (job_dir / "ok.txt").exists() and not (outside / "no.txt").exists()
