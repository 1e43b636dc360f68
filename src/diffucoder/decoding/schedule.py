"""Dream's time grid and its floor-based "how many tokens to unmask this step" rule
(Dream's ``generation_utils.py``).

Dream walks ``t_i = linspace(1, eps, steps + 1)`` and at step ``i`` unmasks
``k_i = int(m_i * (1 - t_{i+1} / t_i))`` tokens, where ``m_i`` is the number still masked, and at the
last step all ``m_i`` that remain. The floor makes the counts uneven: 256 tokens in 256 steps unmask
0 at the first step, 1 per step after that and 2 at the last. We keep the arithmetic in float32 torch
scalars exactly as Dream does, because a float64 re-derivation flips some floors and no longer
reproduces the published schedule.
"""

from __future__ import annotations

import torch


def time_grid(steps: int, eps: float) -> torch.Tensor:
    """(steps + 1,) float32 times from 1 down to ``eps``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(1, eps, steps + 1)


def transfer_ratio(grid: torch.Tensor, step: int) -> torch.Tensor:
    """``1 - t_{i+1} / t_i`` at ``step`` (float32 scalar): the share of masked tokens to unmask."""
    return 1 - grid[step + 1] / grid[step]


def num_to_unmask(masked: torch.Tensor, grid: torch.Tensor, step: int) -> torch.Tensor:
    """Tokens to unmask at ``step`` for each row, given ``masked`` (B,) counts still masked.

    The last step (``step == len(grid) - 2``) unmasks everything left.
    """
    if step == len(grid) - 2:
        return masked.long()
    return (masked.float() * transfer_ratio(grid, step)).long()


def unmask_schedule(length: int, steps: int, eps: float = 1e-3) -> list[int]:
    """The per-step unmask counts for a fully masked completion of ``length`` tokens.

    Example: ``unmask_schedule(256, 256)`` is ``[0, 1, 1, ..., 1, 2]``.
    """
    grid = time_grid(steps, eps)
    masked = torch.tensor([length])
    counts = []
    for step in range(steps):
        k = num_to_unmask(masked, grid, step)
        counts.append(int(k))
        masked = masked - k
    return counts
