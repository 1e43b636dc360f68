"""Realign AR-shifted logits for inference (as Dream's ``generation_utils.py``: training keeps the
AR shift, so hidden state ``j - 1`` predicts token ``j``).

The diffusion LM keeps the causal LM's shift: ``logits[:, i]`` predicts token ``i + 1``. Samplers
want the prediction *for* position ``j``; it comes from hidden state ``j - 1``. Position 0 has no
predecessor and reuses its own logits, as Dream does; position 0 (BOS or first prompt token) is
never masked, so that slot is never read.
"""

from __future__ import annotations

import torch


def logits_at_positions(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, V) AR-shifted logits -> (B, T, V) where ``out[:, j]`` predicts token ``j``."""
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
