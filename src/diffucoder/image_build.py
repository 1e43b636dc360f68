"""The machinery under ``make images``: which engine builds, where bases and torch come from.

Engines: a Docker daemon that answers (``docker buildx build``), else podman + buildah (``buildah
bud``; ``make container-engine`` installs and configures them as root on Debian/Ubuntu). Every
failure of the build environment raises :class:`BuildEnvironmentError` with a message that says
what is missing and what to do: no engine, a base image that is neither local nor pullable (no
registry access), a local base that cannot be bootstrapped.

``--local-base`` serves machines that reach PyPI and a Debian mirror but no container registry nor
the PyTorch wheel index: the python base becomes a Debian suite bootstrapped here (debootstrap,
imported into the engine, cached), and CPU torch comes from this machine's own pip (``pip
download``), served to the build on a loopback index for the build's duration.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(".cache") / "images"  # under the checkout; gitignored
PULL_TIMEOUT_S = 180
# A fixed loopback port keeps the torch index URL (a build arg) stable, so the engine's layer cache
# survives rebuilds; another free port is used when it is taken.
TORCH_INDEX_PORT = 38617
_DEFAULT_MIRROR = "http://deb.debian.org/debian"


class BuildEnvironmentError(RuntimeError):
    """The machine cannot build our images as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Engine:
    """A container engine as the build sees it: ``docker`` (BuildKit) or ``podman`` (+ buildah)."""

    name: str

    @property
    def cli(self) -> str:
        return self.name

    def build_command(
        self,
        dockerfile: Path,
        context: Path,
        ref: str,
        args: dict[str, str],
        *,
        push: bool = False,
        mounts: tuple[tuple[str, str], ...] = (),
    ) -> list[str]:
        """One image's build command. ``mounts`` (host, container) are read-only and only seen by
        RUN steps (buildah), never part of a layer."""
        arg_words = [w for key in sorted(args) for w in ("--build-arg", f"{key}={args[key]}")]
        if self.name == "docker":
            return [
                "docker", "buildx", "build", "--file", str(dockerfile), "--tag", ref, *arg_words,
                "--push" if push else "--load", str(context),
            ]  # fmt: skip
        # chroot isolation: RUN steps need no OCI runtime and share the host's network, so pip and
        # apt reach the registries (and a loopback torch index) as the host does. Docker format:
        # the OCI format drops SHELL (the trainer's RUN steps are bash).
        volumes = [w for host, inside in mounts for w in ("--volume", f"{host}:{inside}:ro")]
        return [
            "buildah", "bud", "--isolation", "chroot", "--layers", "--format", "docker",
            "--file", str(dockerfile),
            "--tag", ref, *arg_words, *volumes, str(context),
        ]  # fmt: skip

    def push_command(self, ref: str) -> list[str] | None:
        """Docker pushes in the build (``--push``); podman pushes the built image afterwards."""
        return None if self.name == "docker" else ["podman", "push", ref]

    def has_image(self, ref: str) -> bool:
        return _quiet([self.cli, "image", "inspect", ref])

    def ensure_base(self, ref: str, *, local_base_hint: bool = True) -> None:
        """The base must be in the engine already or pullable now; else say so and what to do."""
        if self.has_image(ref):
            return
        if ref.startswith("localhost/"):
            raise BuildEnvironmentError(
                f"base image {ref} is missing from {self.name}: it is built on this machine, "
                "by `python -m diffucoder.images build --local-base` (make images LOCAL_BASE=1)"
            )
        try:
            proc = subprocess.run(
                [self.cli, "pull", ref], capture_output=True, text=True, timeout=PULL_TIMEOUT_S
            )
            failed, detail = proc.returncode != 0, (proc.stderr or proc.stdout).strip()
        except subprocess.TimeoutExpired:
            failed, detail = True, f"no answer within {PULL_TIMEOUT_S}s"
        if failed:
            hint = (
                "; without registry access, build on a local Debian base: make images LOCAL_BASE=1"
                if local_base_hint
                else ""
            )
            raise BuildEnvironmentError(
                f"base image {ref} is not in {self.name} and cannot be pulled "
                f"({detail.splitlines()[-1] if detail else 'no output'}): is a registry reachable "
                f"from this machine? Pull or load it by hand{hint}"
            )


def _quiet(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def detect_engine() -> Engine:
    """Docker when its daemon answers, else podman with buildah; else a clear error."""
    if shutil.which("docker") and _quiet(["docker", "info"]):
        return Engine("docker")
    if shutil.which("podman") and shutil.which("buildah"):
        return Engine("podman")
    have = [tool for tool in ("docker", "podman", "buildah") if shutil.which(tool)]
    found = f" (found {', '.join(have)}, but no daemon answers `docker info`)" if have else ""
    raise BuildEnvironmentError(
        f"no container engine{found}: start a Docker daemon with BuildKit, or install podman and "
        "buildah (Debian/Ubuntu: apt-get install podman buildah runc debootstrap); "
        "`make container-engine` installs and configures them when run as root on Debian/Ubuntu"
    )


# ---------------------------------------------------------------------------------------------
# A Debian base bootstrapped here (no registry needed)
# ---------------------------------------------------------------------------------------------


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 ``URIs:`` or one-line ``deb`` entries)."""
    files = sorted((sources_dir / "sources.list.d").glob("*")) + [sources_dir / "sources.list"]
    for path in files:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = line.split()
                url = words[1] if words[:1] == ["URIs:"] else words[1] if words[:1] == ["deb"] else ""
                if url.startswith("http") and "security" not in url:
                    return url.rstrip("/")
    return _DEFAULT_MIRROR


def ensure_local_base(engine: Engine, image: str, suite: str, cache_dir: Path = CACHE_DIR) -> str:
    """``image`` in the engine: a ``debootstrap --variant=minbase`` of ``suite``, imported once.

    The rootfs tarball is kept in ``cache_dir`` so a pruned engine re-imports in seconds.
    """
    if engine.has_image(image):
        return image
    tarball = cache_dir / f"debian-{suite}-minbase.tar"
    if not tarball.exists():
        _bootstrap(suite, tarball)
    print(f"importing {tarball} as {image}", file=sys.stderr)
    with tarball.open("rb") as f:
        subprocess.run([engine.cli, "import", "-", image], stdin=f, check=True, stdout=subprocess.DEVNULL)
    return image


def _bootstrap(suite: str, tarball: Path) -> None:
    if os.geteuid() != 0:
        raise BuildEnvironmentError("bootstrapping the local Debian base needs root (debootstrap)")
    if not shutil.which("debootstrap"):
        raise BuildEnvironmentError(
            "debootstrap is missing: apt-get install debootstrap (make container-engine installs it)"
        )
    mirror = apt_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    print(f"bootstrapping Debian {suite} from {mirror} (a few minutes, once)", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise BuildEnvironmentError(
                f"debootstrap of {suite} from {mirror} failed: {proc.stderr.strip()[-500:]}"
            )
        # The suite's updates and security fixes too, as the official images carry them.
        (rootfs / "etc/apt/sources.list").write_text(
            f"deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\n"
            f"deb {mirror.rsplit('/', 1)[0]}/debian-security {suite}-security main\n"
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.replace(tarball)


# ---------------------------------------------------------------------------------------------
# CPU torch from this machine's pip, on a loopback index
# ---------------------------------------------------------------------------------------------


def host_wheel(requirement: str, dest: Path) -> Path:
    """The wheel ``pip install <requirement>`` would pick on this machine, downloaded to ``dest``
    (whatever index, find-links or proxy this machine's pip is configured with)."""
    name = requirement.split("==")[0]
    found = sorted(dest.glob(f"{name}-*.whl"))
    if not found:
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest),
             requirement],
            capture_output=True, text=True,
        )  # fmt: skip
        found = sorted(dest.glob(f"{name}-*.whl"))
        if proc.returncode != 0 or not found:
            raise BuildEnvironmentError(
                f"this machine's pip cannot download {requirement}: {proc.stderr.strip()[-400:]}"
            )
    return found[-1]


@contextlib.contextmanager
def loopback_index(root: Path) -> Iterator[str]:
    """Serve ``root`` (one folder per project, wheels inside) as a PEP 503 simple index on
    127.0.0.1 for as long as the block runs; yields the index URL. Directory listings are valid
    simple-index pages, so the standard library's server is all this needs."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", TORCH_INDEX_PORT), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def host_ca_bundle() -> str | None:
    """The CA bundle this machine's pip trusts beyond the default (``PIP_CERT``), if any: builds
    mount it read-only for pip in RUN steps; it never becomes part of an image."""
    cert = os.environ.get("PIP_CERT")
    return cert if cert and Path(cert).is_file() else None
