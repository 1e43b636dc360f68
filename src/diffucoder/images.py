"""Our container images: their names and tags, and how to build them from images/versions.yaml.

Why one module: the manifests, the TrainJob builder and ``make images`` must agree on which image
runs where. Image *references* (``ghcr.io/diffucoder/diffucoder-trainer:0.1.0``) derive from the
package version, so code running inside a cluster (with no repo checkout) computes the same names
the build pushed. Build-time *pins* (torch, DeepSpeed, base images) live only in
``images/versions.yaml``; the Dockerfiles declare them as build args without defaults.

Build targets: ``trainer`` (CUDA, for clusters), ``trainer-cpu`` (same Dockerfile, CPU torch, tag
suffix ``-cpu``: the whole DAG in containers on a CPU machine), ``sandbox``, ``tools``. The engine
and the local-base switch are :mod:`diffucoder.image_build`'s.

    python -m diffucoder.images build [TARGET ...] [--registry R] [--tag T] [--push] [--local-base] [--dry-run]
    python -m diffucoder.images refs
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from diffucoder.image_build import (
    CACHE_DIR,
    BuildEnvironmentError,
    Engine,
    detect_engine,
    ensure_local_base,
    host_ca_bundle,
    host_wheel,
    loopback_index,
)

IMAGES = ("trainer", "sandbox", "tools")
# The unprivileged uid (= gid) each image runs as: its Dockerfile's USER, and what the manifests
# run it as. The sandbox has one of its own: RLIMIT_NPROC, which bounds the processes of the code
# it runs, counts every process of a uid on the node, so a trainer pod beside a sandbox pod must
# not share its uid.
IMAGE_UIDS = {"trainer": 10001, "tools": 10001, "sandbox": 10002}
# build target -> (image, flavour); a flavour other than the default adds "-<flavour>" to the tag
TARGETS = {
    "trainer": ("trainer", "cuda"),
    "trainer-cpu": ("trainer", "cpu"),
    "sandbox": ("sandbox", None),
    "tools": ("tools", None),
}
DEFAULT_FLAVOUR = "cuda"
DEFAULT_REGISTRY = "ghcr.io/diffucoder"
REGISTRY_ENV = "DIFFUCODER_IMAGE_REGISTRY"
TRAINER_FLAVOUR_ENV = "DIFFUCODER_TRAINER_FLAVOUR"
VERSIONS_FILE = Path("images") / "versions.yaml"
_REQUIRED_SECTIONS = ("bases", "torch_index", "packages", "sandbox_server", "sandbox_solution", "local_base")


def image_tag() -> str:
    """The tag every image of this release carries: the installed package version."""
    return metadata.version("diffucoder")


def image_ref(name: str, registry: str | None = None, tag: str | None = None) -> str:
    """Full reference of one of our images or build targets, e.g.
    ``ghcr.io/diffucoder/diffucoder-sandbox:0.1.0``, ``...-trainer:0.1.0-cpu`` for ``trainer-cpu``.

    ``registry`` defaults to $DIFFUCODER_IMAGE_REGISTRY, else ``ghcr.io/diffucoder``.
    """
    if name not in TARGETS:
        raise ValueError(f"unknown image {name!r}; ours are {', '.join(TARGETS)}")
    image, flavour = TARGETS[name]
    registry = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")
    suffix = f"-{flavour}" if flavour not in (None, DEFAULT_FLAVOUR) else ""
    return f"{registry}/diffucoder-{image}:{tag or image_tag()}{suffix}"


def trainer_target() -> str:
    """The trainer build target pipeline steps use: ``trainer`` (CUDA), or ``trainer-cpu`` when
    $DIFFUCODER_TRAINER_FLAVOUR is ``cpu`` (the DAG in containers on a CPU machine)."""
    flavour = os.environ.get(TRAINER_FLAVOUR_ENV, DEFAULT_FLAVOUR)
    targets = {f: t for t, (image, f) in TARGETS.items() if image == "trainer"}
    if flavour not in targets:
        raise ValueError(f"${TRAINER_FLAVOUR_ENV}={flavour!r}: expected one of {', '.join(targets)}")
    return targets[flavour]


def find_repo_root(start: Path | None = None) -> Path:
    """The checkout that holds images/versions.yaml (searched upward from ``start`` or the cwd)."""
    for base in (start or Path.cwd(), Path(__file__).resolve()):
        for candidate in (base, *base.parents):
            if (candidate / VERSIONS_FILE).is_file():
                return candidate
    raise FileNotFoundError(
        f"{VERSIONS_FILE} not found above {start or Path.cwd()}: run from a diffucoder checkout"
    )


def load_versions(path: Path) -> dict[str, dict[str, Any]]:
    """Read and shape-check the versions file; errors name the file and the section."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping")
    for section in _REQUIRED_SECTIONS:
        entries = data.get(section)
        if not isinstance(entries, dict) or not entries:
            raise ValueError(f"{path}: section {section!r} is missing or empty")
        for key, value in entries.items():
            if not isinstance(value, str | int | float) or str(value).strip() == "":
                raise ValueError(f"{path}: {section}.{key} must be a non-empty scalar, got {value!r}")
    return {section: {k: str(v) for k, v in data[section].items()} for section in _REQUIRED_SECTIONS}


def _arg_name(key: str) -> str:
    return key.upper().replace("-", "_")


def build_args(versions: dict[str, dict[str, str]], target: str = "trainer") -> dict[str, str]:
    """Docker build args: ``bases.python`` -> PYTHON_BASE, ``packages.torch`` -> TORCH_VERSION,
    ``torch_index.cuda`` -> TORCH_INDEX_CUDA, sandbox lists -> ``name==version`` strings, and the
    trainer flavour of ``target`` (its bases, torch index, which DeepSpeed ops are prebuilt: fused
    Adam for CUDA, the shared-memory collective for CPU)."""
    bases, index = versions["bases"], versions["torch_index"]
    args = {f"{_arg_name(k)}_BASE": v for k, v in bases.items()}
    args |= {f"TORCH_INDEX_{_arg_name(k)}": v for k, v in index.items()}
    args |= {f"{_arg_name(k)}_VERSION": v for k, v in versions["packages"].items()}
    for section in ("sandbox_server", "sandbox_solution"):
        args[f"{section.upper()}_REQUIREMENTS"] = " ".join(f"{k}=={v}" for k, v in versions[section].items())
    if TARGETS.get(target, (None, None))[1] == "cpu":
        args |= {
            "TRAINER_BUILD_BASE": bases["python"],
            "TRAINER_RUNTIME_BASE": bases["python"],
            "TORCH_INDEX": index["cpu"],
            "DS_BUILD_FUSED_ADAM": "0",
            "DS_BUILD_SHM_COMM": "1",
        }
    else:  # cuda: compile DeepSpeed's fused Adam in the devel base, run on the runtime base
        args |= {
            "TRAINER_BUILD_BASE": bases["cuda_devel"],
            "TRAINER_RUNTIME_BASE": bases["cuda_runtime"],
            "TORCH_INDEX": index["cuda"],
            "DS_BUILD_FUSED_ADAM": "1",
            "DS_BUILD_SHM_COMM": "0",
        }
    return args


def declared_args(dockerfile: Path) -> dict[str, str | None]:
    """``ARG`` names a Dockerfile declares, with their default (None = must come from us)."""
    declared: dict[str, str | None] = {}
    for line in dockerfile.read_text().splitlines():
        words = line.strip().split(maxsplit=1)
        if len(words) == 2 and words[0].upper() == "ARG":
            name, _, default = words[1].partition("=")
            declared[name.strip()] = default.strip() if "=" in words[1] else None
    return declared


def dockerfile_of(target: str, root: Path) -> Path:
    return root / "images" / TARGETS[target][0] / "Dockerfile"


def used_args(target: str, root: Path, args: dict[str, str]) -> dict[str, str]:
    """The args this target's Dockerfile declares (so a command shows what the image uses); every
    one without a default must have a value."""
    dockerfile = dockerfile_of(target, root)
    declared = declared_args(dockerfile)
    missing = [a for a, default in declared.items() if default is None and a not in args]
    if missing:
        raise ValueError(
            f"{dockerfile}: build args {missing} have no default and no entry in {VERSIONS_FILE}"
        )
    return {key: args[key] for key in declared if key in args}


def base_images(target: str, root: Path, args: dict[str, str]) -> list[str]:
    """The base images a target's build starts from (its ``*_BASE`` args), each once."""
    return sorted({v for k, v in used_args(target, root, args).items() if k.endswith("_BASE")})


def build_command(
    name: str,
    root: Path,
    args: dict[str, str],
    ref: str,
    push: bool = False,
    engine: Engine | None = None,
    mounts: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """The engine's build command for one target (context = repo root, for src/); default docker."""
    return (engine or Engine("docker")).build_command(
        dockerfile_of(name, root), root, ref, used_args(name, root, args), push=push, mounts=mounts
    )


LOCAL_BASE_TARGETS = ("sandbox", "tools", "trainer-cpu")  # the CUDA trainer needs its CUDA bases
HOST_CA_IN_BUILD = "/run/host-ca.crt"


@dataclass
class BuildPlan:
    """What ``build`` runs: the engine, the versions with any local substitutes, extra build args
    and read-only build mounts."""

    engine: Engine
    versions: dict[str, dict[str, str]]
    extra_args: dict[str, str] = field(default_factory=dict)
    mounts: tuple[tuple[str, str], ...] = ()


def _targets(ns: argparse.Namespace) -> list[str]:
    names = ns.names or (LOCAL_BASE_TARGETS if ns.local_base else IMAGES)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        raise SystemExit(f"unknown image(s) {', '.join(unknown)}; ours are {', '.join(TARGETS)}")
    if ns.local_base and "trainer" in names:
        raise SystemExit(
            "--local-base replaces the python base only; the CUDA trainer needs the CUDA bases "
            "from a registry. Build trainer-cpu on the local base instead."
        )
    return list(names)


def _plan(ns: argparse.Namespace, root: Path, targets: list[str], stack: contextlib.ExitStack) -> BuildPlan:
    try:
        engine = Engine(ns.engine) if ns.engine else detect_engine()
    except BuildEnvironmentError:
        if not ns.dry_run:
            raise
        engine = Engine("docker")  # printing commands needs no engine
    plan = BuildPlan(engine, load_versions(root / VERSIONS_FILE))
    if ns.local_base:
        local = plan.versions["local_base"]
        plan.versions["bases"]["python"] = local["image"]
        if not ns.dry_run:
            ensure_local_base(engine, local["image"], local["debian_suite"], root / CACHE_DIR)
        if {"tools", "trainer-cpu"} & set(targets):
            index_root = root / CACHE_DIR / "torch-index"
            torch = f"torch=={plan.versions['packages']['torch']}"
            if not ns.dry_run:
                host_wheel(torch, index_root / "torch")
            plan.versions["torch_index"]["cpu"] = stack.enter_context(loopback_index(index_root))
    cert = host_ca_bundle()
    if cert and engine.name == "podman":
        plan.mounts = ((cert, HOST_CA_IN_BUILD),)
        plan.extra_args["PIP_CERT"] = HOST_CA_IN_BUILD
    return plan


def _build(ns: argparse.Namespace) -> int:
    root = find_repo_root()
    targets = _targets(ns)
    with contextlib.ExitStack() as stack:
        plan = _plan(ns, root, targets, stack)
        for target in targets:
            args = build_args(plan.versions, target) | plan.extra_args
            ref = image_ref(target, ns.registry, ns.tag)
            cmd = build_command(target, root, args, ref, push=ns.push, engine=plan.engine, mounts=plan.mounts)
            print(shlex.join(cmd), file=sys.stderr)
            if ns.dry_run:
                continue
            for base in base_images(target, root, args):
                plan.engine.ensure_base(base, local_base_hint=not ns.local_base)
            started = time.monotonic()
            if subprocess.run(cmd).returncode != 0:
                raise BuildEnvironmentError(
                    f"building {target} ({ref}) failed: see the build output above. pip or apt errors "
                    "there usually mean the build cannot reach PyPI or the Debian mirror (a proxy "
                    "whose CA pip needs: export PIP_CERT=/path/to/ca-bundle.crt)"
                )
            print(f"built {ref} in {time.monotonic() - started:.0f}s", file=sys.stderr)
            if ns.push and (push := plan.engine.push_command(ref)):
                subprocess.run(push, check=True)
    return 0


def _refs(ns: argparse.Namespace) -> int:
    for name in TARGETS:
        print(image_ref(name, ns.registry, ns.tag))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffucoder.images", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (and optionally push) the images with docker or podman")
    build.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"any of {', '.join(TARGETS)} (default: {', '.join(IMAGES)}; "
        f"with --local-base: {', '.join(LOCAL_BASE_TARGETS)})",
    )
    build.add_argument("--push", action="store_true", help="push to the registry after building")
    build.add_argument("--dry-run", action="store_true", help="print the commands only")
    build.add_argument(
        "--local-base",
        action="store_true",
        help="no container registry here: build on a Debian base bootstrapped on this machine, with "
        "CPU torch from this machine's pip",
    )
    build.add_argument(
        "--engine", choices=["docker", "podman"], default=None, help="default: whichever this machine has"
    )
    refs = sub.add_parser("refs", help="print the image references of this release")
    for p in (build, refs):
        p.add_argument("--registry", default=None, help=f"default: ${REGISTRY_ENV} or {DEFAULT_REGISTRY}")
        p.add_argument("--tag", default=None, help="default: the package version")
    build.set_defaults(func=_build)
    refs.set_defaults(func=_refs)
    ns = parser.parse_args(argv)
    try:
        return ns.func(ns)
    except BuildEnvironmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
