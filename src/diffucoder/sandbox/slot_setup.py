"""What each executor slot prepares once, at start, and what the server detects about the host.

The seccomp program (compiled by libseccomp), the paths landlock lets the code read, the root of
the job directories, the checks that the runtime is visible and readable from inside the slot
(layout.slot_problems), and the bubblewrap prefix of a slot. The executor runs :func:`prepare` in a
short-lived child of its own, so libseccomp, subprocess and the rest of what this module imports are
never mapped into the executor, which every job's fork copies (docs/sandbox.md, "What a job costs").
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from diffucoder.sandbox import isolation, layout

SLOT_TMPFS_BYTES = 512 * 1024 * 1024  # each bubblewrap slot's private /tmp: what its jobs may write together

# --- seccomp -------------------------------------------------------------------------------------
# We use libseccomp (pyseccomp) rather than hand-written BPF so the architecture checks (x32, compat
# syscalls) are right.

_DENIED_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET)
_DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "userfaultfd",
    "kexec_load",
    "init_module",
    "finit_module",
    "swapon",
    "swapoff",
    "reboot",
)


_SIGNAL_SYSCALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")


def compile_seccomp_filter(protected_pids: tuple[int, ...] = ()) -> isolation.CompiledSeccomp:
    """The seccomp program a child installs with one prctl (:func:`seccomp_program`, loadable)."""
    return isolation.CompiledSeccomp(seccomp_program(protected_pids))


def seccomp_program(protected_pids: tuple[int, ...] = ()) -> bytes:
    """The BPF of :func:`build_seccomp_filter`, as libseccomp exports it for this architecture."""
    with tempfile.TemporaryFile() as f:
        build_seccomp_filter(protected_pids).export_bpf(f)
        f.seek(0)
        return f.read()


def build_seccomp_filter(protected_pids: tuple[int, ...] = ()):
    """The libseccomp filter object (see :func:`compile_seccomp_filter` for what children load).

    ``protected_pids`` (the executor and the server) cannot be signalled, nor their process groups,
    nor "every process" (pid -1): that matters when code and server share a uid (a non-root pod),
    where the kernel's own permission check would allow it.
    """
    import pyseccomp

    flt = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    eperm = pyseccomp.ERRNO(errno.EPERM)
    for family in _DENIED_FAMILIES:
        flt.add_rule(eperm, "socket", pyseccomp.Arg(0, pyseccomp.EQ, int(family)))
    # unshare with CLONE_NEWUSER would give the code a fresh namespace with full capabilities in it;
    # clone3 passes its flags in memory seccomp cannot read, so it answers ENOSYS and libc falls back to clone
    flt.add_rule(eperm, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, 0x10000000, 0x10000000))
    with contextlib.suppress(ValueError, RuntimeError, OSError):
        flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for name in _DENIED_SYSCALLS:
        with contextlib.suppress(ValueError, RuntimeError, OSError):  # syscall unknown on this architecture
            flt.add_rule(eperm, name)
    targets = {-1} | {p for pid in protected_pids for p in (pid, -pid)}
    for name in _SIGNAL_SYSCALLS:
        for target in sorted(targets):
            # pid_t is 32-bit: compare the low half so -1 matches however the register was extended
            arg = pyseccomp.Arg(0, pyseccomp.MASKED_EQ, 0xFFFFFFFF, target & 0xFFFFFFFF)
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                flt.add_rule(eperm, name, arg)
    return flt


# --- landlock ------------------------------------------------------------------------------------

# what any program needs to read besides its own runtime (layout.runtime_paths measures that part)
_SYSTEM_READ_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/etc", "/dev/null", "/dev/urandom", "/dev/zero")


def landlock_read_paths(runtime_paths: list[str]) -> list[str]:
    """What the code may read under landlock: the system dirs and the slot's runtime paths, each
    once (a path inside another needs no rule of its own; every rule costs a syscall per job)."""
    return layout.minimal([*_SYSTEM_READ_PATHS, *runtime_paths])


# --- bubblewrap and the job dir root --------------------------------------------------------------


def bwrap_command(runtime_paths: list[str]) -> list[str] | None:
    """The bubblewrap prefix for a slot, or None when bwrap is missing or cannot create namespaces here.

    ``/bin/true`` only answers whether this host lets bwrap build the namespaces; whether the runtime
    works inside them is proven by the slots themselves at start (layout.slot_problems).
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    prefix = [
        bwrap,
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    for mount in layout.PRIVATE_MOUNTS:  # size-capped: the code's files count against the slot, not the host
        prefix += ["--size", str(SLOT_TMPFS_BYTES), "--tmpfs", mount]
    if os.geteuid() == 0:
        prefix += [
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
            "--cap-add",
            "CAP_KILL",
            "--cap-add",
            "CAP_DAC_OVERRIDE",
            "--cap-add",
            "CAP_CHOWN",
            "--cap-add",
            "CAP_FOWNER",
        ]
    try:
        probe = subprocess.run([*prefix, "--", "/bin/true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [*prefix, *layout.bwrap_binds(runtime_paths)] if probe.returncode == 0 else None


def private_tmp_root(executor_pid: int) -> Path:
    """Parent of an executor's job dirs: root-owned, not listable, so jobs cannot find each other's dirs.

    Under bubblewrap TMPDIR is the slot's private /tmp; without it, the server's TMPDIR.
    """
    tmpdir = os.environ.get("TMPDIR", "/tmp")
    root = Path(tmpdir) / f"diffucoder-sandbox-{executor_pid}"
    try:
        root.mkdir(mode=0o711, exist_ok=True)
    except OSError as exc:
        raise isolation.IsolationError(
            f"cannot create the job directory root {root} (TMPDIR={tmpdir}): {exc.strerror}; "
            "point TMPDIR at a writable directory"
        ) from None
    return root


def prepare(*, uid: int | None, executor_pid: int, server_pid: int) -> dict:
    """A slot's per-slot state, as JSON-ready data for the executor (see the module docstring).

    ``uid`` is the slot's code uid (None when the code keeps the server's); the executor and the
    server are the processes the code may never signal.
    """
    runtime_paths = layout.paths_from_env()
    tmp_root = private_tmp_root(executor_pid)
    landlock = isolation.landlock_abi() >= 1
    return {
        "seccomp_program": seccomp_program((executor_pid, server_pid)).hex(),
        "landlock": landlock,
        "read_paths": landlock_read_paths(runtime_paths),
        "tmp_root": str(tmp_root),
        # what would keep the code from running here (a runtime path hidden or unreadable): the
        # server refuses to start on these, naming the paths
        "problems": layout.slot_problems(runtime_paths, uid=uid, tmp_root=str(tmp_root)),
    }
