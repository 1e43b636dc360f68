"""DecodingConfig: paper defaults, and contradictory fast-decoding settings named in one error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from diffucoder.config import load_config
from diffucoder.decoding.config import DecodingConfig


def test_defaults_are_diffucoders_demo_settings():
    cfg = DecodingConfig()
    assert (cfg.max_new_tokens, cfg.steps, cfg.alg, cfg.top_p, cfg.temperature) == (
        256,
        256,
        "entropy",
        0.95,
        0.2,
    )
    assert cfg.threshold is None and cfg.kv_cache == "none" and cfg.block_length == 256


def test_fast_settings_apply_only_when_enabled():
    cfg = DecodingConfig(fast={"enabled": True})
    assert (cfg.threshold, cfg.block_length, cfg.kv_cache) == (0.9, 32, "dual")


def test_block_length_must_divide_the_completion():
    with pytest.raises(ValidationError, match=r"block_length=24 must divide decoding.max_new_tokens=256"):
        DecodingConfig(fast={"enabled": True, "block_length": 24})


def test_steps_must_split_evenly_over_blocks():
    with pytest.raises(
        ValidationError, match=r"decoding.steps=100 must be a multiple of the number of blocks \(8"
    ):
        DecodingConfig(steps=100, fast={"enabled": True, "block_length": 32})


def test_threshold_needs_a_confidence_alg():
    with pytest.raises(ValidationError, match="alg='origin' has none"):
        DecodingConfig(alg="origin", fast={"enabled": True})


@pytest.mark.parametrize("preset", ["tiny", "paper-7b"])
def test_presets_validate(preset):
    cfg = load_config(preset)
    assert cfg.decoding.steps >= 1


def test_cli_override_reaches_the_fast_section():
    cfg = load_config("tiny", ["decoding.fast.enabled=true", "decoding.fast.kv_cache=prefix"])
    assert cfg.decoding.kv_cache == "prefix"
