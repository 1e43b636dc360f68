"""The benchmark data ships inside the package: the files are the published releases, a wheel carries
them with their licences, and evaluation and decontamination read them unless a setting names a local
directory or an s3:// prefix instead."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from diffucoder import benchmark_data, storage
from diffucoder.data.config import DecontamConfig
from diffucoder.data.decontam import Decontaminator
from diffucoder.evaluation.benchmarks import benchmark_uri, load_benchmark
from diffucoder.evaluation.config import EvaluationConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
LICENCES = ("evalplus/LICENSE-HumanEvalPlus", "evalplus/LICENSE-MbppPlus", "mbpp/LICENSE-MBPP")


def test_shipped_files_are_the_published_releases(benchmark_dir):
    for name, digest in benchmark_data.SHA256.items():
        assert hashlib.sha256((benchmark_dir / name).read_bytes()).hexdigest() == digest, name
    readme = (benchmark_dir / "README.md").read_text()
    assert all(digest in readme for digest in benchmark_data.SHA256.values())
    assert all((benchmark_dir / licence).is_file() for licence in LICENCES)


def test_defaults_resolve_inside_the_installed_package(benchmark_dir):
    import diffucoder

    assert benchmark_dir == Path(diffucoder.__file__).parent / "benchmark_data"
    assert EvaluationConfig().data_root is None and DecontamConfig().benchmarks_dir is None
    uri = benchmark_uri("mbpp_plus", EvaluationConfig())
    assert uri == str(benchmark_dir / benchmark_data.MBPP_PLUS)


def test_a_local_copy_overrides_the_shipped_data(tmp_path, benchmark_dir):
    (tmp_path / "mbpp").mkdir()
    rows = (benchmark_dir / benchmark_data.MBPP).read_text().splitlines()
    (tmp_path / benchmark_data.MBPP).write_text("\n".join(rows[10:13]) + "\n")  # task ids 11-13
    assert [p.task_id for p in load_benchmark("mbpp", EvaluationConfig(data_root=str(tmp_path)))] == [
        "Mbpp/11",
        "Mbpp/12",
        "Mbpp/13",
    ]


def test_an_s3_prefix_overrides_the_shipped_data(s3_env, benchmark_dir):
    prefix = f"{s3_env}/benchmarks"
    for name in benchmark_data.FILES:
        storage.write_bytes(f"{prefix}/{name}", (benchmark_dir / name).read_bytes())
    cfg = EvaluationConfig(data_root=prefix, max_problems=2)
    assert [p.task_id for p in load_benchmark("humaneval_plus", cfg)] == ["HumanEval/0", "HumanEval/1"]
    from_s3 = Decontaminator.build(DecontamConfig(benchmarks_dir=prefix))
    assert len(from_s3.strings) == len(Decontaminator.build(DecontamConfig()).strings) > 1000


def test_a_missing_decontamination_file_names_it_and_its_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.decontam.benchmarks_dir") as err:
        Decontaminator.build(DecontamConfig(benchmarks_dir=str(tmp_path)))
    assert str(tmp_path / benchmark_data.HUMANEVAL_PLUS) in str(err.value)
    gone = tmp_path / "private.jsonl"
    with pytest.raises(
        FileNotFoundError, match=r"private\.jsonl does not exist \(data\.decontam\.extra_files"
    ):
        Decontaminator.build(DecontamConfig(extra_files=[str(gone)]))


def test_the_wheel_carries_the_data_and_finds_it_once_installed(tmp_path):
    """Build the wheel as pip does, unpack it as an install would, and import only from there."""
    project = tmp_path / "project"  # a copy, so the build writes nothing into the checkout
    for folder in ("src", "pipelines", "components"):
        shutil.copytree(
            REPO_ROOT / folder, project / folder, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
        )
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO_ROOT / name, project / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(project)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("diffucoder-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [*benchmark_data.FILES, *LICENCES, "README.md", "__init__.py"]
    assert {f"diffucoder/benchmark_data/{name}" for name in shipped} - names == set()
    # the KFP side ships beside the library, pipelines/ and components/ under their import names
    kfp_side = {"diffucoder_kfp/cli.py", "diffucoder_kfp/diffucoder.py", "diffucoder_kfp/components/train.py"}
    assert kfp_side - names == set()
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # -S: no site-packages, so neither the editable install nor the source tree can answer
    probe = (
        f"import sys; sys.path.insert(0, {str(site)!r}); from diffucoder import benchmark_data as b; "
        "import hashlib, pathlib; root = pathlib.Path(b.shipped_root()); print(root); "
        "print(all(hashlib.sha256((root / n).read_bytes()).hexdigest() == d for n, d in b.SHA256.items()))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.split()
    assert out == [str(site / "diffucoder" / "benchmark_data"), "True"]
