"""Fixtures for the GRPO tests: a real tokenizer and a small diffusion LM built in-process.

The tokenizer is trained on CPython stdlib source plus the tiny tasks' SFT answers, so chat and
code tokens exist; the model is far smaller than the tiny preset so estimator tests run in seconds.
"""

from __future__ import annotations

import inspect
import json
import json.decoder
import textwrap

import pytest
import torch

from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.model.config import ModelConfig


@pytest.fixture(scope="session")
def tokenizer():
    from diffucoder.data.formats import tasks_to_sft
    from diffucoder.data.tiny_tasks import generate_tasks

    answers = [r["messages"][1]["content"] for r in tasks_to_sft(generate_tasks(0, 64, 4, 2)["train"])]
    return train_tokenizer(
        [inspect.getsource(json.decoder), inspect.getsource(textwrap), *answers], vocab_size=600
    )


@pytest.fixture(scope="session")
def small_model(tokenizer):
    from diffucoder.model import build_model

    cfg = ModelConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=256,
        rope_theta=10000.0,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer)
    model.eval()
    return model


@pytest.fixture(scope="module")
def grpo_inputs(tmp_path_factory, small_model, tokenizer):
    """An init model dir (the small model) and a 16-problem RL set from the tiny tasks."""
    from diffucoder.data.formats import tasks_to_rl
    from diffucoder.data.tiny_tasks import generate_tasks
    from diffucoder.model import save_model

    root = tmp_path_factory.mktemp("grpo")
    save_model(small_model, tokenizer, str(root / "init"))
    rows = tasks_to_rl(generate_tasks(0, 16, 4, 2)["train"])
    (root / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
