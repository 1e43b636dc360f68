"""Fixtures for the decoding tests: a small tokenizer and an untrained small diffusion LM.

An untrained model is enough for the sampler's contracts (schedule, batching, caches, traces):
they must hold for any weights. Its logits are random but fixed by the seed, so greedy decoding
is deterministic.
"""

from __future__ import annotations

import inspect
import json.decoder
import textwrap

import pytest
import torch

from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.model import build_model


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer([inspect.getsource(m) for m in (json.decoder, textwrap)], vocab_size=400)


@pytest.fixture(scope="session")
def model(tokenizer, small_model_cfg):
    torch.manual_seed(0)
    return build_model(small_model_cfg, tokenizer).eval()


@pytest.fixture(scope="session")
def prompts(tokenizer) -> list[list[int]]:
    """Three prompts of different lengths (so a batch needs left padding)."""
    texts = ["def add(a, b):", "import json\nclass Decoder(object):\n    def decode(self, s):", "x ="]
    return [tokenizer(t)["input_ids"] for t in texts]


@pytest.fixture(scope="session")
def padded_batch(prompts, model) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts as a (B, P) left-padded batch and its (B, P) attention mask."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[model.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask
