"""Typed config for the `evaluation` section. Owned by the evaluation package; composed in diffucoder.config."""

from __future__ import annotations

from diffucoder.config_base import StrictModel


class EvaluationConfig(StrictModel):
    """Evaluation stage: benchmarks, sampling grid and execution limits."""
