"""Fixtures for the pipeline tests: the IR compiled once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # pipelines/ and components/ are repo folders, not installed packages
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def compiled_ir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """(path, pipeline spec, platform spec) of a fresh compile of this checkout's DAG."""
    from pipelines.compile import compile_pipeline

    path = compile_pipeline(tmp_path_factory.mktemp("ir") / "diffucoder.yaml")
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return path, spec, platform
