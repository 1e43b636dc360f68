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
def small_cfg() -> ModelConfig:
    """Smaller than the tiny preset so each test runs in well under a second."""
    return ModelConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        rope_theta=10000.0,
        dtype="float32",
    )


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    """CI has 2 shared cores; a fixed seed makes weight init (global RNG) reproducible per test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
