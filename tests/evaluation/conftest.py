"""Fixtures for the evaluation tests: the shared benchmark data, resolved from the repo root."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = (REPO_ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_root() -> str:
    if not (DATA_ROOT / "evalplus").is_dir():
        pytest.fail(f"benchmark data not found at {DATA_ROOT} (expected ../shared/data next to the repo)")
    return str(DATA_ROOT)
