"""The masked-diffusion model: an HF Qwen2 causal LM with bidirectional attention and the AR shift kept.

The public names are resolved lazily (PEP 562): ``diffucoder.config`` imports
``diffucoder.model.config`` for ``ModelConfig``, and that must not pull in torch/transformers for
commands that never touch a model (e.g. ``diffucoder sandbox serve``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DiffusionLM": "diffucoder.model.diffusion_lm",
    "build_model": "diffucoder.model.build",
    "enable_gradient_checkpointing": "diffucoder.model.build",
    "load_model": "diffucoder.model.io",
    "save_model": "diffucoder.model.io",
    "anneal_ratio": "diffucoder.model.masks",
    "annealed_attention_mask": "diffucoder.model.masks",
}
__all__ = [
    "DiffusionLM",
    "anneal_ratio",
    "annealed_attention_mask",
    "build_model",
    "enable_gradient_checkpointing",
    "load_model",
    "save_model",
]

if TYPE_CHECKING:
    from diffucoder.model.build import build_model, enable_gradient_checkpointing
    from diffucoder.model.diffusion_lm import DiffusionLM
    from diffucoder.model.io import load_model, save_model
    from diffucoder.model.masks import anneal_ratio, annealed_attention_mask


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'diffucoder.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
