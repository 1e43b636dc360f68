"""The isolation layers each sandbox job child installs in itself before any of the code runs.

Layers (docs/sandbox.md has the threat model):

* unprivileged uid: when the server runs as root, each slot's children run as their own uid
  (base + slot); that is what makes RLIMIT_NPROC bind (the kernel ignores it for root) and what
  stops the code from signalling or ptracing the server.
* rlimits: address space, CPU seconds, file size, open files, processes, no core dumps.
* seccomp: socket() for AF_INET/AF_INET6/AF_NETLINK/AF_PACKET fails with EPERM, plus a few syscalls
  the code never needs (ptrace, mount, namespaces, bpf, io_uring). The program is compiled once per
  slot (slot_setup.py); a child installs it with one prctl.
* landlock: filesystem writes only in the job's private temp dir, reads only of the runtime
  (interpreter, libraries, /usr, /etc) and the child's own /proc entry; unprivileged, kernel >= 5.13.
* subreaper: the executor adopts every orphan, so setsid'd or double-forked grandchildren are
  still found and killed after each job (executor.kill_descendants).
* bubblewrap (optional, per slot): network, pid, ipc and uts namespaces, a read-only root and a
  private /tmp, with the runtime's own paths bound back read-only (slot_setup.bwrap_command).

The executor imports this module and forks every job from itself, so it imports only what the
layers need: every extension module and library mapped into the executor is copied (page tables,
written pages) by each job's fork. What is prepared once per slot lives in slot_setup.py.
"""

from __future__ import annotations

import ctypes
import os
import resource
import stat
import sys
from dataclasses import dataclass

PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

# the libc already mapped into the interpreter (ctypes.util.find_library would import subprocess)
_libc = ctypes.CDLL(None, use_errno=True)
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


class LandlockRules:
    """A landlock policy whose read-only part is prepared once: the handled access rights and one
    rule per path of ``readable``, each holding an ``O_PATH`` descriptor of its path that stays open
    until ``close``. The executor prepares it per slot and its job children inherit the descriptors,
    so a child only opens its own few paths (job dir, ``/dev/null``, its ``/proc`` entry) instead of
    looking up and checking every runtime path again. Each child still builds its own ruleset: its
    rules name its own paths, and a rule added to a ruleset shared through the fork would stay in it."""

    def __init__(self, readable: list[str]):
        abi = landlock_abi()
        if abi < 1:
            raise IsolationError("landlock is not available on this kernel")
        self.handled = (
            _FS_READ | _FS_WRITE_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
        )
        self._attr = _RulesetAttr(self.handled)
        self._fixed = [(path, rule) for path in readable if (rule := _path_rule(path, _FS_READ)) is not None]

    def restrict(self, *, writable: list[str], readable: tuple[str, ...] = ()) -> None:
        """Restrict the calling process: reads under the prepared paths and ``readable``, reads and
        writes under ``writable``. Needs NO_NEW_PRIVS (or CAP_SYS_ADMIN)."""
        own = [(path, rule) for path in readable if (rule := _path_rule(path, _FS_READ)) is not None]
        own += [(path, rule) for path in writable if (rule := _path_rule(path, self.handled)) is not None]
        ruleset = _libc.syscall(
            _SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(self._attr), ctypes.sizeof(self._attr), 0
        )
        try:
            if ruleset < 0:
                raise IsolationError(f"landlock_create_ruleset failed: errno {ctypes.get_errno()}")
            for path, rule in (*self._fixed, *own):
                if _libc.syscall(
                    _SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0
                ):
                    raise IsolationError(f"landlock_add_rule({path}) failed: errno {ctypes.get_errno()}")
            if _libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
                raise IsolationError(f"landlock_restrict_self failed: errno {ctypes.get_errno()}")
        finally:
            if ruleset >= 0:
                os.close(ruleset)
            for _, rule in own:
                os.close(rule.parent_fd)

    def close(self) -> None:
        for _, rule in self._fixed:
            os.close(rule.parent_fd)
        self._fixed = []


def _path_rule(path: str, access: int) -> _PathBeneathAttr | None:
    """A path-beneath rule for ``path`` with an ``O_PATH`` descriptor the caller closes; None for
    an optional runtime path that does not exist here. A file gets only the rights a file has."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    return _PathBeneathAttr(access if is_dir else access & ~_FS_READ_DIR & _FS_FILE_MASK, fd)


# access rights that make sense on a file (not a directory)
_FS_FILE_MASK = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE
