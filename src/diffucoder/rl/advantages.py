"""Group-relative advantages (paper §2.3, Table 2 "LOO"; apple/ml-diffucoder
``coupled_grpo.py``).

Rollouts arrive as consecutive groups of G completions of the same prompt. ``mean`` is the paper's
baseline A_i = r_i - mean_j r_j; ``loo`` (leave-one-out, the released code) is
A_i = r_i - (sum_j r_j - r_i) / (G - 1), which equals G / (G - 1) times the mean-centred advantage.
With ``scale`` each group is divided by its (unbiased) std + 1e-4, as TRL's ``scale_rewards``.
A group whose rewards are all equal carries no signal: every advantage is exactly 0.
"""

from __future__ import annotations

import torch

STD_EPS = 1e-4


def group_advantages(
    rewards: torch.Tensor, group_size: int, mode: str = "mean", scale: bool = False
) -> torch.Tensor:
    """(N,) rewards in groups of ``group_size`` -> (N,) advantages.

    Raises:
        ValueError: N is not a multiple of ``group_size``, ``group_size`` < 2, or an unknown ``mode``.
    """
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(
            f"{rewards.numel()} rewards cannot form groups of {group_size} (need G >= 2 dividing N)"
        )
    groups = rewards.reshape(-1, group_size).to(torch.float64)
    total = groups.sum(dim=1, keepdim=True)
    if mode == "mean":
        adv = groups - total / group_size
    elif mode == "loo":
        adv = groups - (total - groups) / (group_size - 1)
    else:
        raise ValueError(f"grpo.advantage={mode!r}: expected mean or loo")
    if scale:
        adv = adv / (groups.std(dim=1, keepdim=True) + STD_EPS)
    return adv.reshape(-1).to(rewards.dtype)


def varied_groups(rewards: torch.Tensor, group_size: int) -> list[int]:
    """Indices of the groups whose rewards are not all equal (the ones with a policy gradient)."""
    groups = rewards.reshape(-1, group_size)
    return (groups.max(dim=1).values != groups.min(dim=1).values).nonzero().flatten().tolist()


def zero_std_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """Share of groups whose rewards are all equal (they contribute no policy gradient)."""
    return 1.0 - len(varied_groups(rewards, group_size)) / (rewards.numel() // group_size)


def rows_to_keep(rewards: torch.Tensor, group_size: int, groups: int) -> list[int]:
    """Rows of the ``groups`` groups a round trains on: groups with reward variance first, then flat
    ones, in draw order (dynamic sampling, ``grpo.redraw_flat_groups``)."""
    varied = varied_groups(rewards, group_size)
    flat = sorted(set(range(rewards.numel() // group_size)) - set(varied))
    return [g * group_size + j for g in sorted((varied + flat)[:groups]) for j in range(group_size)]
