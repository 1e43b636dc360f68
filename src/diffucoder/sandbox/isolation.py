"""Isolation layers applied to each sandbox child, and detection of what this host offers.

Layers (docs/sandbox.md has the threat model):

* unprivileged uid: when the server runs as root, each slot's children run as their own uid
  (base + slot); that is what makes RLIMIT_NPROC bind (the kernel ignores it for root) and what
  stops the code from signalling or ptracing the server.
* rlimits: address space, CPU seconds, file size, open files, processes, no core dumps.
* seccomp: socket() for AF_INET/AF_INET6/AF_NETLINK/AF_PACKET fails with EPERM, plus a few syscalls
  the code never needs (ptrace, mount, namespaces, bpf, io_uring). It needs no privilege and still
  holds inside a hardened pod, where a NetworkPolicy does not police loopback. We use libseccomp
  (pyseccomp) rather than hand-written BPF so the architecture checks (x32, compat syscalls) are right.
* landlock: filesystem writes only in the job's private temp dir, reads only of the runtime
  (interpreter, libraries, /usr, /etc) and the child's own /proc entry; unprivileged, kernel >= 5.13.
* subreaper: the executor adopts every orphan, so setsid'd or double-forked grandchildren are
  still found and killed after each job (executor.kill_descendants).
* bubblewrap (optional, per slot): network, pid, ipc and uts namespaces, a read-only root and a
  private /tmp, with the runtime's own paths bound back read-only (layout.py decides which).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import resource
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from diffucoder.sandbox import layout

PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
SLOT_TMPFS_BYTES = 512 * 1024 * 1024  # each bubblewrap slot's private /tmp: what its jobs may write together

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class IsolationError(RuntimeError):
    """A mandatory isolation layer could not be applied; the job must not run."""


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpu_seconds: int
    file_mb: int
    open_files: int
    processes: int


def apply_rlimits(limits: Limits) -> None:
    mb = 1024 * 1024
    for res, value in (
        (resource.RLIMIT_AS, limits.memory_mb * mb),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(res, (value, value))


def drop_privileges(uid: int) -> None:
    """setgroups/setgid/setuid to ``uid`` (gid = uid); verified, because a silent failure would leave root."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid:
        raise IsolationError(f"could not drop to uid {uid}")


def set_no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise IsolationError(f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}")


def set_child_subreaper() -> None:
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise IsolationError(f"prctl(CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")


# --- seccomp -------------------------------------------------------------------------------------

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


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class CompiledSeccomp:
    """A seccomp program compiled once by libseccomp in the fork server.

    Children install it with one prctl instead of asking libseccomp to regenerate the same BPF in
    every child (``seccomp_load`` compiles on each call).
    """

    PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2

    def __init__(self, bpf: bytes):
        count = len(bpf) // ctypes.sizeof(_SockFilter)
        self._program = (_SockFilter * count).from_buffer_copy(bpf)
        self._fprog = _SockFprog(count, ctypes.cast(self._program, ctypes.POINTER(_SockFilter)))

    def load(self) -> None:
        """Install in the calling process; NO_NEW_PRIVS must already be set."""
        if _libc.prctl(self.PR_SET_SECCOMP, self.SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0:
            raise IsolationError(f"prctl(PR_SET_SECCOMP) failed: errno {ctypes.get_errno()}")


def compile_seccomp_filter(protected_pids: tuple[int, ...] = ()) -> CompiledSeccomp:
    import tempfile

    with tempfile.TemporaryFile() as f:
        build_seccomp_filter(protected_pids).export_bpf(f)
        f.seek(0)
        return CompiledSeccomp(f.read())


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
# No maintained Python binding exists (PyPI `landlock` is a 1.0.0.dev pre-release), and the ABI is
# three syscalls and two structs, so we call it through ctypes.

_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_WRITE_ALL_V1 = (1 << 13) - 1 - (_FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR)  # remove/make*/write
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """Landlock ABI version of this kernel, 0 when unavailable."""
    if sys.platform != "linux" or os.uname().machine not in ("x86_64", "aarch64"):
        return 0
    version = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return max(int(version), 0)


def landlock_restrict(writable: list[str], readable: list[str]) -> None:
    """Allow reads under ``readable``, reads+writes under ``writable``; everything else is denied."""
    abi = landlock_abi()
    if abi < 1:
        raise IsolationError("landlock is not available on this kernel")
    handled = _FS_READ | _FS_WRITE_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled)
    ruleset = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise IsolationError(f"landlock_create_ruleset failed: errno {ctypes.get_errno()}")
    try:
        for paths, access in ((readable, _FS_READ), (writable, handled)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # optional runtime path that does not exist here
                try:
                    is_dir = os.path.isdir(path)
                    rule = _PathBeneathAttr(access if is_dir else access & ~_FS_READ_DIR & _FS_FILE_MASK, fd)
                    if (
                        _libc.syscall(
                            _SYS_LANDLOCK_ADD_RULE,
                            ruleset,
                            _LANDLOCK_RULE_PATH_BENEATH,
                            ctypes.byref(rule),
                            0,
                        )
                        != 0
                    ):
                        raise IsolationError(f"landlock_add_rule({path}) failed: errno {ctypes.get_errno()}")
                finally:
                    os.close(fd)
        if _libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            raise IsolationError(f"landlock_restrict_self failed: errno {ctypes.get_errno()}")
    finally:
        os.close(ruleset)


# access rights that make sense on a file (not a directory)
_FS_FILE_MASK = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE


# what any program needs to read besides its own runtime (layout.runtime_paths measures that part)
_SYSTEM_READ_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/etc", "/dev/null", "/dev/urandom", "/dev/zero")


def landlock_read_paths(runtime_paths: list[str]) -> list[str]:
    """What the code may read under landlock: the system dirs and the slot's runtime paths, each
    once (a path inside another needs no rule of its own; every rule costs a syscall per job)."""
    return layout.minimal([*_SYSTEM_READ_PATHS, *runtime_paths])


# --- detection -----------------------------------------------------------------------------------


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


def private_tmp_root() -> Path:
    """Parent of per-job temp dirs: root-owned, not listable, so jobs cannot find each other's dirs.

    Under bubblewrap TMPDIR is the slot's private /tmp; without it, the server's TMPDIR.
    """
    tmpdir = os.environ.get("TMPDIR", "/tmp")
    root = Path(tmpdir) / f"diffucoder-sandbox-{os.getpid()}"
    try:
        root.mkdir(mode=0o711, exist_ok=True)
    except OSError as exc:
        raise IsolationError(
            f"cannot create the job directory root {root} (TMPDIR={tmpdir}): {exc.strerror}; "
            "point TMPDIR at a writable directory"
        ) from None
    return root
