"""Fixtures for the pipeline tests: the IR compiled once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def compiled_ir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """(path, pipeline spec, platform spec) of a fresh compile of this checkout's DAG."""
    from diffucoder_kfp.compile import compile_pipeline

    path = compile_pipeline(tmp_path_factory.mktemp("ir") / "diffucoder.yaml")
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return path, spec, platform
