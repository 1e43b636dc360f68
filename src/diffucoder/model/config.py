"""Typed config for the `model` section. Owned by the model package; composed in diffucoder.config."""

from __future__ import annotations

from diffucoder.config_base import StrictModel


class ModelConfig(StrictModel):
    """The masked-diffusion model: architecture for from-scratch builds, or a base checkpoint URI."""
