"""Typed config for the `decoding` section. Owned by the decoding package; composed in diffucoder.config."""

from __future__ import annotations

from diffucoder.config_base import StrictModel


class DecodingConfig(StrictModel):
    """Diffusion sampler settings (Dream diffusion_generate semantics) and fast decoding."""
