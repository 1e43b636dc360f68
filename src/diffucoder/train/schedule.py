"""Learning-rate schedule of stages 1-3: linear warmup, then cosine decay to a floor (paper §B.1,
Table 3).

The paper decays to 10% of the peak LR. The schedule is a pure function of the optimizer step so
resume needs no scheduler state beyond the step count (DeepSpeed still saves the LambdaLR state).
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak LR used for optimizer step ``step`` (0-based).

    Warmup ramps (step + 1) / warmup so the first step already moves the weights; after warmup the
    factor follows a half cosine from 1 at the end of warmup to ``min_ratio`` at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float
) -> LambdaLR:
    """A LambdaLR over :func:`lr_factor` (DeepSpeed steps it once per optimizer step)."""
    return LambdaLR(optimizer, lambda step: lr_factor(step, warmup_steps, total_steps, min_ratio))
