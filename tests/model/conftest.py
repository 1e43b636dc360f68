"""Fixtures for the model tests: a small tokenizer trained on a fixed corpus and a tiny model config.

The corpus is the source of a few CPython stdlib modules: real code, fixed per Python version,
no network and nothing copied into the repo.
"""

from __future__ import annotations

import inspect
import json.decoder
import json.encoder
import textwrap

import pytest
import torch

from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.model.config import ModelConfig


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return [inspect.getsource(mod) for mod in (json.decoder, json.encoder, textwrap)]


@pytest.fixture(scope="session")
def tokenizer(corpus):
    return train_tokenizer(corpus, vocab_size=512)


@pytest.fixture
def small_cfg(small_model_cfg) -> ModelConfig:
    """A per-test copy of the shared small config (some tests change fields)."""
    return small_model_cfg.model_copy()


@pytest.fixture(autouse=True)
def _seed():
    """A fixed seed makes weight init (global RNG) reproducible per test (threads: root conftest)."""
    torch.manual_seed(0)
