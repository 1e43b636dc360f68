"""The built images, checked from inside: pinned versions, what they carry, what they must not.

Marker ``images`` (`make test-images`): each target is built by the project's own build command
(tests/built_images.py), then inspected with the engine. The sandbox image's behaviour under its
pod's security context is tests/sandbox's ``[image]`` variant.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from built_images import REPO_ROOT, built, inspect, run_in
from packaging.version import Version

from diffucoder.images import IMAGE_UIDS, TARGETS, VERSIONS_FILE, image_tag, load_versions

pytestmark = pytest.mark.images

VERSIONS = load_versions(REPO_ROOT / VERSIONS_FILE)
BUILT = ("sandbox", "tools", "trainer-cpu")
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "nvcc", "tcc")


def pins(target: str) -> dict[str, str]:
    """What images/versions.yaml says ``target`` must carry, by distribution name."""
    if target == "sandbox":
        return VERSIONS["sandbox_server"] | VERSIONS["sandbox_solution"]
    packages = {k: v for k, v in VERSIONS["packages"].items() if k != "flash-attn"}  # opt-in build arg
    if target != "tools":
        packages.pop("psycopg2-binary")
    return packages


def installed(image: str, names: list[str]) -> dict[str, str | None]:
    script = (
        "import json, sys\nfrom importlib import metadata\nout = {}\nfor n in sys.argv[1:]:\n"
        "    try:\n        out[n] = metadata.version(n)\n    except metadata.PackageNotFoundError:\n"
        "        out[n] = None\nprint(json.dumps(out))\n"
    )
    return json.loads(run_in(image, "python3", "-c", script, *names))


@pytest.mark.parametrize("target", BUILT)
def test_installed_versions_are_the_pinned_ones(target):
    image = built(target)
    expected = pins(target) | {"diffucoder": image_tag()}
    found = installed(image, sorted(expected))
    drift = {
        name: (want, found[name])
        for name, want in expected.items()
        # torch's CPU wheel is 2.13.0+cpu: the local label names the build, not another version
        if found[name] is None or Version(found[name]).public != Version(want).public
    }
    assert not drift, f"{image}: (images/versions.yaml, installed) {drift}"


def source_digests() -> str:
    """A script printing {relative path: sha256} of every .py file below the directory given as its argument."""
    return (
        "import hashlib, json, pathlib, sys\nroot = pathlib.Path(sys.argv[1])\n"
        "print(json.dumps({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()"
        " for p in sorted(root.rglob('*.py'))}))\n"
    )


@pytest.mark.parametrize("target", BUILT)
def test_the_image_runs_this_checkouts_code(target):
    """Every module of the installed package is the checkout's: a stale layer cache (a build that
    reused the old project layer after a code change) fails here."""
    here = json.loads(
        subprocess.run(
            [sys.executable, "-c", source_digests(), str(REPO_ROOT / "src" / "diffucoder")],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    find = "import diffucoder, os; print(os.path.dirname(diffucoder.__file__))"
    package = run_in(built(target), "python3", "-c", find).strip()
    inside = json.loads(run_in(built(target), "python3", "-c", source_digests(), package))
    differ = sorted(p for p in here.keys() | inside.keys() if here.get(p) != inside.get(p))
    assert not differ, f"{built(target)} does not carry the checkout's {differ[:10]}"


@pytest.mark.parametrize("target", BUILT)
def test_runtime_stage_has_no_compilers_and_runs_as_its_uid(target):
    image, uid = built(target), IMAGE_UIDS[TARGETS[target][0]]
    assert inspect(image)["Config"]["User"] == f"{uid}:{uid}"
    assert run_in(image, "id", "-u").strip() == str(uid)
    found = run_in(image, "sh", "-c", f"for c in {' '.join(COMPILERS)}; do command -v $c; done; true")
    assert found.strip() == "", f"{image} carries compilers: {found.split()}"


@pytest.mark.parametrize("target", BUILT)
def test_the_build_time_ca_mount_stays_out_of_the_image(target):
    image = built(target)
    env = inspect(image)["Config"].get("Env") or []
    assert not [e for e in env if e.startswith(("PIP_CERT=", "REQUESTS_CA_BUNDLE=", "SSL_CERT_FILE="))]
    # buildah leaves the mount point behind as an empty file; the bundle itself must not be there
    assert run_in(image, "sh", "-c", "test -s /run/host-ca.crt && echo present; true").strip() == ""


@pytest.mark.parametrize("target", ("tools", "trainer-cpu"))
def test_pipeline_images_carry_the_package_data_and_kfp(target):
    """A pipeline step resolves its preset and the benchmark data (decontamination, evaluation) from
    the installed package, checksums included, and runs KFP's executor."""
    script = (
        "from importlib import resources\nimport hashlib, pathlib\nimport kfp.dsl.executor_main\n"
        "from diffucoder import benchmark_data as b\n"
        "print(sorted(p.name for p in resources.files('diffucoder.presets').iterdir() if p.suffix == '.yaml'))\n"
        "root = pathlib.Path(b.root(None))\n"
        "print(all(hashlib.sha256((root / f).read_bytes()).hexdigest() == b.SHA256[f] for f in b.FILES))\n"
    )
    presets, data_ok = run_in(built(target), "python3", "-c", script).splitlines()[-2:]
    assert "tiny.yaml" in presets and "paper-7b.yaml" in presets
    assert data_ok == "True"


def test_the_cpu_trainer_imports_its_stack():
    script = (
        "import torch, deepspeed, transformers\n"
        "from deepspeed.accelerator import get_accelerator\n"
        "assert not torch.cuda.is_available()\n"
        # prebuilt: the image has no compiler to JIT the op init_distributed loads
        "get_accelerator().create_op_builder('ShareMemCommBuilder').load()\n"
        "print('versions', torch.__version__, deepspeed.__version__, transformers.__version__)\n"
    )
    out = (
        run_in(built("trainer-cpu"), "python3", "-c", script).splitlines()[-1].split()
    )  # after DeepSpeed's log
    assert out[0] == "versions" and Version(out[1]).local == "cpu"
