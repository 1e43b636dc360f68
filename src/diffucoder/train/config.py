"""Typed config for stages 1-3 (pretrain, midtrain, instruct). Owned by diffucoder.train."""

from __future__ import annotations

from diffucoder.config_base import StrictModel


class TrainStageConfig(StrictModel):
    """One training stage; the three stages differ only by these values."""
