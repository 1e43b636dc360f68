"""Fixtures for the data-stage tests: small stdlib subsets and a tiny tokenizer, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffucoder.data.config import DataConfig
from diffucoder.data.corpus import stdlib_root


@pytest.fixture(scope="session")
def data_cfg() -> DataConfig:
    return DataConfig()


@pytest.fixture(scope="session")
def stdlib_subset() -> list[Path]:
    """~70 real stdlib modules (top-level, 2-40 kB), in path order: the default-suite corpus."""
    root = stdlib_root()
    return [p for p in sorted(root.glob("*.py")) if 2_000 < p.stat().st_size < 40_000][:70]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> str:
    from diffucoder.data.tokenizer import save_tokenizer, train_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted(stdlib_root().glob("*.py"))[:40]]
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(train_tokenizer(texts, 512), str(out))
    return str(out)
