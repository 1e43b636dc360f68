"""The DeepSpeed config is derived from TrainStageConfig (one source of truth)."""

from __future__ import annotations

import pytest

from diffucoder.train.config import TrainStageConfig
from diffucoder.train.deepspeed_config import deepspeed_config


def test_batch_sizes_clipping_and_zero_stage():
    stage = TrainStageConfig(micro_batch_size=2, grad_accum_steps=4, max_grad_norm=0.5, zero_stage=3)
    ds = deepspeed_config(stage, world_size=8, precision="bf16")
    assert ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["gradient_accumulation_steps"] == 4
    assert ds["train_batch_size"] == 64
    assert ds["gradient_clipping"] == 0.5
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["bf16"] == {"enabled": True}


def test_zero2_fp32_default():
    ds = deepspeed_config(TrainStageConfig(), world_size=1, precision="fp32")
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["bf16"] == {"enabled": False} and ds["fp16"] == {"enabled": False}


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        deepspeed_config(TrainStageConfig(), 1, "fp16")


def test_bf16_mixed_keeps_deepspeed_in_fp32_and_is_refused_for_grpo():
    from diffucoder.rl.config import GRPOConfig

    stage = TrainStageConfig(precision="bf16-mixed")
    ds = deepspeed_config(stage, world_size=2, precision="bf16-mixed")
    assert ds["bf16"] == {"enabled": False} and ds["fp16"] == {"enabled": False}
    with pytest.raises(ValueError, match="bf16-mixed is not supported for grpo"):
        GRPOConfig(precision="bf16-mixed")
