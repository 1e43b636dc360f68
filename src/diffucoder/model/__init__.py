"""The masked-diffusion model: an HF Qwen2 causal LM with bidirectional attention and the AR shift kept."""

from diffucoder.model.build import build_model, enable_gradient_checkpointing
from diffucoder.model.diffusion_lm import DiffusionLM
from diffucoder.model.io import load_model, save_model
from diffucoder.model.masks import anneal_ratio, annealed_attention_mask

__all__ = [
    "DiffusionLM",
    "anneal_ratio",
    "annealed_attention_mask",
    "build_model",
    "enable_gradient_checkpointing",
    "load_model",
    "save_model",
]
