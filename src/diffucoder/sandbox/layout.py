"""Where the slots' Python runtime lives, and how each slot's mount namespace shows exactly that.

A slot runs ``python -m diffucoder.sandbox.executor`` inside bubblewrap, which gives it a private
tmpfs on /tmp, and the code under test runs as another uid. Both hide parts of a perfectly normal
install: a venv or a clone under /tmp disappears behind the private /tmp, and an interpreter or venv
under a 0700 home (pyenv in /root) cannot be traversed by the sandbox uid. So instead of guessing,
the server *measures* what the runtime needs: :func:`discover` starts the real interpreter with the
slot's environment, imports the executor (and with it the harness) exactly as a slot does, and
reports every path that process reads (:func:`runtime_paths`). :func:`bwrap_binds` then binds back,
read-only, only those of them the namespace would hide, and each slot checks at start that every
one is visible and readable by its uid (:func:`slot_problems`), so a layout that cannot work fails
at server start with the path named, not later as a slot that dies on every job.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# the executor reads the discovered paths from this variable (landlock rules and its start-up check)
RUNTIME_PATHS_ENV = "DIFFUCODER_SANDBOX_RUNTIME_PATHS"
# where bubblewrap mounts a private tmpfs over the host's directory in every slot
PRIVATE_MOUNTS = ("/tmp",)
# variables that decide how the interpreter finds itself; passed to the slots when the server has them
_INTERPRETER_ENV = ("LD_LIBRARY_PATH", "PYTHONHOME")


class SandboxLayoutError(RuntimeError):
    """The slots cannot run from this interpreter/venv/source layout; the message names the path."""


@dataclass(frozen=True)
class RuntimeLayout:
    """What a slot runs and every path its runtime reads, measured by :func:`discover`."""

    interpreter: str
    package_root: str
    paths: tuple[str, ...]

    def slot_env(self, *, tmpdir: str) -> dict[str, str]:
        """The slot's whole environment: no server secrets, only what locates the runtime."""
        env = _base_env(self.package_root, tmpdir=tmpdir)
        env[RUNTIME_PATHS_ENV] = json.dumps(self.paths)
        return env

    def slot_command(self, *args: str) -> list[str]:
        # -P: the working directory ("/") must not land on sys.path, nor among the runtime paths
        return [self.interpreter, "-P", "-m", "diffucoder.sandbox.executor", *args]


def _base_env(package_root: str, *, tmpdir: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": package_root, "TMPDIR": tmpdir}
    env.update({k: os.environ[k] for k in _INTERPRETER_ENV if os.environ.get(k)})
    return env


def package_root() -> str:
    """The directory that holds the ``diffucoder`` package (a checkout's src/ or a site-packages)."""
    import diffucoder

    return os.path.dirname(os.path.dirname(os.path.abspath(diffucoder.__file__)))


def discover(interpreter: str | None = None, *, timeout_s: float = 60.0) -> RuntimeLayout:
    """Run the slots' interpreter as a slot would (outside the namespace) and collect its paths.

    Raises :class:`SandboxLayoutError` naming the interpreter when it cannot be started or cannot
    import the sandbox with the slot's environment.
    """
    interpreter = sys.executable if interpreter is None else interpreter
    if not interpreter or not os.path.isabs(interpreter):
        raise SandboxLayoutError(
            f"the sandbox interpreter path {interpreter!r} is unusable: slots need an absolute path to a "
            "Python executable (sys.executable is empty or relative in embedded interpreters)"
        )
    if not os.access(interpreter, os.X_OK) or os.path.isdir(interpreter):
        raise SandboxLayoutError(
            f"the sandbox interpreter {interpreter} is unusable: it does not exist or is not executable "
            f"(resolves to {os.path.realpath(interpreter)})"
        )
    root = package_root()
    cmd = [interpreter, "-P", "-m", "diffucoder.sandbox.layout"]
    try:
        out = subprocess.run(
            cmd,
            env=_base_env(root, tmpdir=tempfile.gettempdir()),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxLayoutError(f"the sandbox interpreter {interpreter} cannot be started: {exc}") from None
    if out.returncode != 0:
        raise SandboxLayoutError(
            f"the sandbox interpreter {interpreter} cannot import the sandbox executor from {root} "
            f"(exit code {out.returncode}):\n{out.stderr.strip()[-2000:]}"
        )
    paths = tuple(json.loads(out.stdout))
    return RuntimeLayout(interpreter=interpreter, package_root=root, paths=paths)


def runtime_paths() -> list[str]:
    """Every file and directory the running interpreter reads: its executable (the venv's link and
    the real binary), its prefixes, each sys.path entry (.pth targets included), the targets of
    editable-install finders, the directory of every imported module and each mapped shared object.

    Only meaningful in a process that imported what a slot imports; see :func:`discover`.
    """
    found: set[str] = set()
    candidates = [
        sys.executable,
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        *sys.path,
        *_editable_targets(),
        *(os.path.dirname(f) for f in _module_files()),
        *_mapped_files(),
    ]
    for path in candidates:
        if not path or not os.path.isabs(path) or not os.path.exists(path):
            continue
        for form in (os.path.normpath(path), os.path.realpath(path)):
            # "/" or a whole private mount would expose the host's files, never a runtime path
            if form != "/" and form not in PRIVATE_MOUNTS:
                found.add(form)
    return sorted(found)


def _editable_targets() -> Iterator[str]:
    """Source dirs of setuptools' editable finders (``__editable___<dist>_finder`` modules); they
    are imported from a .pth at start-up and map package names to paths that are not on sys.path."""
    for name, module in list(sys.modules.items()):
        if name.startswith("__editable__") and name.endswith("_finder"):
            yield from getattr(module, "MAPPING", {}).values()
            for paths in getattr(module, "NAMESPACES", {}).values():
                yield from paths


def _module_files() -> Iterator[str]:
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            yield path


def _mapped_files() -> Iterator[str]:
    """Shared objects mapped into this process (libpython, extension modules, libseccomp...)."""
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/") and not fields[5].startswith("/dev/"):
                yield fields[5].rstrip("\n")


def minimal(paths: Iterable[str]) -> list[str]:
    """The paths not already inside another one of them (binding or allowing a dir covers its tree)."""
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: Path(p).parts):
        if not any(Path(path).is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def hidden_ancestor(path: str) -> str | None:
    """The top-most directory above ``path`` that other users cannot traverse (e.g. /root, 0700)."""
    parts = Path(path).parts
    for i in range(2, len(parts)):
        ancestor = str(Path(*parts[:i]))
        try:
            if not os.stat(ancestor).st_mode & 0o001:
                return ancestor
        except OSError:
            return None
    return None


def bwrap_binds(paths: Iterable[str]) -> list[str]:
    """bubblewrap arguments (placed after the private /tmp) that make ``paths`` visible in a slot.

    A path under a private mount is bound back read-only; a path below a directory other users
    cannot traverse gets that directory covered by an empty world-traversable tmpfs and is bound
    back into it. Directories created on the way are 0755 (bubblewrap would make them 0700, which the
    sandbox uid cannot cross). Everything else beside the bound paths stays hidden from the code.
    """
    covers: list[str] = []
    binds: list[tuple[str, str]] = []
    for path in minimal(paths):
        mount = next((m for m in PRIVATE_MOUNTS if Path(path).is_relative_to(m)), None)
        if mount is None:
            mount = hidden_ancestor(path)
            if mount is None:
                continue  # visible as it is through the read-only root
            if mount not in covers:
                covers.append(mount)
        binds.append((mount, path))
    args: list[str] = []
    for cover in minimal(covers):
        args += ["--perms", "0755", "--tmpfs", cover]
    made: set[str] = set()
    for mount, path in binds:
        for depth in range(len(Path(mount).parts) + 1, len(Path(path).parts)):
            directory = str(Path(*Path(path).parts[:depth]))
            if directory not in made:
                made.add(directory)
                args += ["--perms", "0755", "--dir", directory]
        args += ["--ro-bind", path, path]
    return args


# --- the slot's start-up check -------------------------------------------------------------------


def paths_from_env() -> list[str]:
    raw = os.environ.get(RUNTIME_PATHS_ENV)
    if raw is None:
        raise SandboxLayoutError(
            f"{RUNTIME_PATHS_ENV} is not set: start executor slots through the sandbox server"
        )
    return list(json.loads(raw))


def slot_problems(paths: list[str], *, uid: int | None, tmp_root: str) -> list[str]:
    """What keeps this slot from running code: runtime paths it cannot see, and (as root) the paths
    and the job directory root that the sandbox uid cannot reach, each named by the directory or file
    that blocks it. Runs inside the slot's namespace."""
    problems = [
        f"{p} is not visible inside the slot's mount namespace" for p in paths if not os.path.exists(p)
    ]
    if uid is None:
        return problems
    runtime_blocked, tmp_blocker = _blockers_for(uid, [p for p in paths if os.path.exists(p)], tmp_root)
    for blocker, held in runtime_blocked.items():
        problems.append(
            f"the sandbox uid {uid} is stopped at {blocker} ({_mode(blocker)}) on the way to {len(held)} "
            f"runtime path(s) such as {held[0]}: make it readable by other users (chmod o+rX) or "
            "install the runtime where they can read it"
        )
    if tmp_blocker is not None:
        problems.append(
            f"the sandbox uid {uid} is stopped at {tmp_blocker} ({_mode(tmp_blocker)}) on the way to its "
            f"job directories in {tmp_root}: set TMPDIR to a directory every user can traverse (such as /tmp)"
        )
    return problems


def _mode(path: str) -> str:
    try:
        return f"mode {os.stat(path).st_mode & 0o7777:04o}"
    except OSError as exc:
        return exc.strerror or "cannot stat"


def _blockers_for(uid: int, paths: list[str], tmp_root: str) -> tuple[dict[str, list[str]], str | None]:
    """For the paths ``uid`` cannot read, the first directory on the way (or the path itself) that
    stops it, mapped to the paths it stops; and what stops it from entering ``tmp_root``. A
    throwaway child drops to the uid and asks the kernel, so ACLs and mount flags count too."""
    from diffucoder.sandbox.isolation import drop_privileges

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            drop_privileges(uid)
            runtime = {p: b for p in paths if (b := _first_denied(p)) is not None}
            report = json.dumps([runtime, _first_denied(tmp_root, enter_only=True)]).encode()
            while report:
                report = report[os.write(write_fd, report) :]
        except BaseException:  # noqa: BLE001 - reported by the parent as a failed check
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        raise SandboxLayoutError(f"could not check what the sandbox uid {uid} can read (status {status})")
    runtime, tmp_blocker = json.loads(data)
    blocked: dict[str, list[str]] = {}
    for path, blocker in runtime.items():
        blocked.setdefault(blocker, []).append(path)
    return blocked, tmp_blocker


def _first_denied(path: str, *, enter_only: bool = False) -> str | None:
    """The first directory on the way to ``path`` (or the path itself) the caller cannot use; the
    last step needs read access (and search, for a directory) unless ``enter_only``."""
    parts = Path(path).parts
    for depth in range(2, len(parts) + 1):
        prefix = str(Path(*parts[:depth]))
        last = depth == len(parts)
        if last and os.path.islink(prefix):  # a venv's python: what matters is its target
            return _first_denied(os.path.realpath(prefix), enter_only=enter_only)
        reads = last and not enter_only
        need = (os.R_OK | (os.X_OK if os.path.isdir(prefix) else 0)) if reads else os.X_OK
        if not os.access(prefix, need):
            return prefix
    return None


def main() -> None:
    """``python -m diffucoder.sandbox.layout``: import what a slot imports, print the paths read."""
    from diffucoder.sandbox import executor, slot_setup

    del executor  # imported for its side effect: the harness and every module a slot loads
    slot_setup.compile_seccomp_filter()  # loads libseccomp as a slot's preparation does at start
    print(json.dumps(runtime_paths()))


if __name__ == "__main__":
    main()
