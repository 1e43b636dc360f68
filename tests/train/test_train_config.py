"""TrainStageConfig: cross-field rules, derived step counts, and the shipped presets' stage blocks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from diffucoder.config import load_config
from diffucoder.train.config import TrainStageConfig


def test_needs_a_length():
    with pytest.raises(ValidationError, match="set max_steps or epochs"):
        TrainStageConfig(max_steps=None, epochs=None)


def test_needs_exactly_one_warmup():
    with pytest.raises(ValidationError, match="exactly one of warmup_steps"):
        TrainStageConfig(warmup_steps=10, warmup_ratio=0.1)
    with pytest.raises(ValidationError, match="exactly one of warmup_steps"):
        TrainStageConfig(warmup_steps=None, warmup_ratio=None)


def test_total_steps_from_epochs_capped_by_max_steps():
    cfg = TrainStageConfig(max_steps=None, epochs=2, micro_batch_size=4, grad_accum_steps=2)
    assert cfg.total_steps(samples_per_epoch=800, world_size=2) == 2 * 800 // 16
    capped = cfg.model_copy(update={"max_steps": 30})
    assert capped.total_steps(800, 2) == 30


def test_warmup_ratio_is_a_share_of_total():
    cfg = TrainStageConfig(warmup_steps=None, warmup_ratio=0.1)
    assert cfg.warmup_for(250) == 25


def test_paper_preset_carries_table3_values():
    cfg = load_config("paper-7b")
    assert (cfg.pretrain.lr, cfg.pretrain.warmup_steps, cfg.pretrain.max_steps) == (2e-5, 20_000, 100_000)
    assert (cfg.pretrain.seq_len, cfg.pretrain.micro_batch_size, cfg.pretrain.anneal_steps) == (
        4096,
        2,
        10_000,
    )
    assert (cfg.midtrain.lr, cfg.midtrain.warmup_steps, cfg.midtrain.epochs) == (1e-5, 2000, 4)
    assert (cfg.instruct.lr, cfg.instruct.warmup_ratio, cfg.instruct.epochs) == (1e-5, 0.1, 5)
    assert (cfg.instruct.seq_len, cfg.instruct.conditional_mask, cfg.instruct.zero_stage) == (
        2048,
        "progressive",
        2,
    )


def test_tiny_preset_stages_fit_the_tiny_model():
    cfg = load_config("tiny")
    for stage in ("pretrain", "midtrain", "instruct"):
        assert getattr(cfg, stage).seq_len <= cfg.model.max_position_embeddings
    assert cfg.pretrain.seq_len == cfg.data.pack.seq_len  # the packed shards the data stage writes
