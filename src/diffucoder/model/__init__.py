"""The masked-diffusion model: an HF Qwen2 causal LM with bidirectional attention and the AR shift kept.

Public names resolve lazily (see ``diffucoder.lazy``) so that importing ``diffucoder.config``
does not pull in torch/transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffucoder.lazy import lazy_exports

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
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from diffucoder.model.build import build_model, enable_gradient_checkpointing
    from diffucoder.model.diffusion_lm import DiffusionLM
    from diffucoder.model.io import load_model, save_model
    from diffucoder.model.masks import anneal_ratio, annealed_attention_mask
