"""Typed config for the `rl` section. Owned by the rl package; composed in diffucoder.config."""

from __future__ import annotations

from diffucoder.config_base import StrictModel


class GRPOConfig(StrictModel):
    """Coupled-GRPO (stage 4) settings."""
