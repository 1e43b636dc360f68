"""Our container images: their names and tags, and how to build them from images/versions.yaml.

Why one module: the manifests, the TrainJob builder and ``make images`` must agree on which image
runs where. Image *references* (``ghcr.io/diffucoder/diffucoder-trainer:0.1.0``) derive from the
package version, so code running inside a cluster (with no repo checkout) computes the same names
the build pushed. Build-time *pins* (torch, DeepSpeed, base images) live only in
``images/versions.yaml``; the Dockerfiles declare them as build args without defaults.

    python -m diffucoder.images build [trainer sandbox tools] [--registry R] [--tag T] [--push] [--dry-run]
    python -m diffucoder.images refs
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

IMAGES = ("trainer", "sandbox", "tools")
DEFAULT_REGISTRY = "ghcr.io/diffucoder"
REGISTRY_ENV = "DIFFUCODER_IMAGE_REGISTRY"
VERSIONS_FILE = Path("images") / "versions.yaml"
_REQUIRED_SECTIONS = ("bases", "torch_index", "packages", "sandbox_server", "sandbox_solution")


def image_tag() -> str:
    """The tag every image of this release carries: the installed package version."""
    return metadata.version("diffucoder")


def image_ref(name: str, registry: str | None = None, tag: str | None = None) -> str:
    """Full reference of one of our images, e.g. ``ghcr.io/diffucoder/diffucoder-sandbox:0.1.0``.

    ``registry`` defaults to $DIFFUCODER_IMAGE_REGISTRY, else ``ghcr.io/diffucoder``.
    """
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r}; ours are {', '.join(IMAGES)}")
    registry = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")
    return f"{registry}/diffucoder-{name}:{tag or image_tag()}"


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


def build_args(versions: dict[str, dict[str, str]]) -> dict[str, str]:
    """Docker build args: ``bases.python`` -> PYTHON_BASE, ``packages.torch`` -> TORCH_VERSION,
    ``torch_index.cuda`` -> TORCH_INDEX_CUDA, sandbox lists -> ``name==version`` strings."""
    args = {f"{_arg_name(k)}_BASE": v for k, v in versions["bases"].items()}
    args |= {f"TORCH_INDEX_{_arg_name(k)}": v for k, v in versions["torch_index"].items()}
    args |= {f"{_arg_name(k)}_VERSION": v for k, v in versions["packages"].items()}
    for section in ("sandbox_server", "sandbox_solution"):
        args[f"{section.upper()}_REQUIREMENTS"] = " ".join(f"{k}=={v}" for k, v in versions[section].items())
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


def build_command(name: str, root: Path, args: dict[str, str], ref: str, push: bool = False) -> list[str]:
    """The ``docker buildx build`` command for one image (context = repo root, for src/).

    Only the args this Dockerfile declares are passed, so the command shows what the image uses.
    """
    dockerfile = root / "images" / name / "Dockerfile"
    missing = [a for a, default in declared_args(dockerfile).items() if default is None and a not in args]
    if missing:
        raise ValueError(
            f"{dockerfile}: build args {missing} have no default and no entry in {VERSIONS_FILE}"
        )
    cmd = ["docker", "buildx", "build", "--file", str(dockerfile), "--tag", ref]
    for key in sorted(set(args) & set(declared_args(dockerfile))):
        cmd += ["--build-arg", f"{key}={args[key]}"]
    cmd += ["--push" if push else "--load", str(root)]
    return cmd


def _build(ns: argparse.Namespace) -> int:
    root = find_repo_root()
    args = build_args(load_versions(root / VERSIONS_FILE))
    unknown = sorted(set(ns.names) - set(IMAGES))
    if unknown:
        raise SystemExit(f"unknown image(s) {', '.join(unknown)}; ours are {', '.join(IMAGES)}")
    for name in ns.names or IMAGES:
        cmd = build_command(name, root, args, image_ref(name, ns.registry, ns.tag), push=ns.push)
        print(shlex.join(cmd), file=sys.stderr)
        if not ns.dry_run:
            subprocess.run(cmd, check=True)
    return 0


def _refs(ns: argparse.Namespace) -> int:
    for name in IMAGES:
        print(image_ref(name, ns.registry, ns.tag))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffucoder.images", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (and optionally push) the images with docker buildx")
    build.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(IMAGES)} (default: all)")
    build.add_argument("--push", action="store_true", help="push instead of loading into the local engine")
    build.add_argument("--dry-run", action="store_true", help="print the commands only")
    refs = sub.add_parser("refs", help="print the image references of this release")
    for p in (build, refs):
        p.add_argument("--registry", default=None, help=f"default: ${REGISTRY_ENV} or {DEFAULT_REGISTRY}")
        p.add_argument("--tag", default=None, help="default: the package version")
    build.set_defaults(func=_build)
    refs.set_defaults(func=_refs)
    ns = parser.parse_args(argv)
    return ns.func(ns)


if __name__ == "__main__":
    sys.exit(main())
