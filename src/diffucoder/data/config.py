"""Typed config for the `data` section. Owned by the data package; composed in diffucoder.config."""

from __future__ import annotations

from diffucoder.config_base import StrictModel


class DataConfig(StrictModel):
    """Data stage: readers, filters, dedup, decontamination, tokenizer, packing and the tiny task sets."""
