"""Relative paths in a config resolve against the project home, whatever the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from diffucoder_kfp import local

from diffucoder.config import load_config
from diffucoder.home import project_home, resolve_path

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env) -> Path:
    """The shell sits in an unrelated directory; no tracking URI or home in the environment."""
    isolated_env("MLFLOW_TRACKING_URI", "DIFFUCODER_HOME")
    shell = tmp_path / "shell"
    shell.mkdir()
    monkeypatch.chdir(shell)
    return shell


def test_home_is_the_env_then_the_checkout(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert project_home() == REPO_ROOT  # an editable install runs from its checkout
    monkeypatch.setenv("DIFFUCODER_HOME", str(elsewhere.parent / "home"))
    assert project_home() == elsewhere.parent / "home"
    assert resolve_path("runs/tiny") == str(elsewhere.parent / "home" / "runs" / "tiny")
    assert resolve_path("s3://bucket/runs") == "s3://bucket/runs"
    assert resolve_path("/abs/runs") == "/abs/runs"


def test_local_run_arguments_do_not_depend_on_the_cwd(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config("tiny")
    assert cfg.output_root == "runs/tiny"
    args = local.local_arguments(cfg, "tiny", [])
    assert args["output_root"] == str(REPO_ROOT / "runs" / "tiny")
    assert args["tracking_uri"] == f"sqlite:///{REPO_ROOT / 'runs' / 'tiny' / 'mlflow.db'}"
    assert local.default_kfp_root("s3://b/runs") == str(REPO_ROOT / "runs" / "kfp-local")
    monkeypatch.setenv("DIFFUCODER_HOME", str(elsewhere.parent))
    assert local.local_arguments(cfg, "tiny", [])["output_root"] == str(elsewhere.parent / "runs" / "tiny")
    assert not any(elsewhere.iterdir())  # nothing was written where the shell happens to be
