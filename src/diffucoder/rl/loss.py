"""The coupled-GRPO objective as pure functions on tensors (paper §2.2-2.3;
apple/ml-diffucoder ``coupled_grpo.py``).

Per completion token k of rollout i with advantage A_i and estimated log-probs under the policy
(``logp``), the rollout policy (``old_logp``) and the reference (``ref_logp``):

    ratio   = exp(logp - old_logp)
    surr    = min(ratio * A_i, clip(ratio, 1 - eps_low, 1 + eps_high) * A_i)
    kl_k3   = exp(ref_logp - logp) - (ref_logp - logp) - 1          (Schulman's k3, >= 0)
    per_tok = -surr + beta * kl_k3

and the loss averages ``per_tok`` over completion tokens: ``token`` normalisation divides the sum
over the micro-batch by its number of completion tokens (the released code), ``sequence`` takes each
rollout's token mean and then the mean over rollouts (the paper's 1/|o_i|).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(d) - d - 1 with d = ref_logp - logp."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def masked_mean(values: torch.Tensor, mask: torch.Tensor, normalization: str) -> torch.Tensor:
    """Mean of ``values`` (B, L) over ``mask``: over all tokens (``token``) or per row then rows (``sequence``)."""
    mask = mask.to(values.dtype)
    if normalization == "token":
        return (values * mask).sum() / mask.sum().clamp(min=1)
    if normalization == "sequence":
        per_row = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return per_row.mean()
    raise ValueError(f"grpo.normalization={normalization!r}: expected token or sequence")


@dataclass(frozen=True)
class LossStats:
    """Scalars of one micro-batch's loss (floats, for logging)."""

    loss: float
    kl: float
    clip_frac: float
    clip_frac_low: float
    clip_frac_high: float
    ratio_mean: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    epsilon_low: float,
    epsilon_high: float,
    beta: float,
    normalization: str = "token",
) -> tuple[torch.Tensor, LossStats]:
    """Clipped-ratio policy loss with a k3 KL penalty, for one micro-batch.

    Args:
        logp: (B, L) policy estimates (with grad).
        old_logp: (B, L) estimates under the rollout policy (no grad; equal to ``logp.detach()`` when mu = 1).
        ref_logp: (B, L) estimates under the reference, or None when ``beta == 0``.
        advantages: (B,) one per rollout.
        completion_mask: (B, L) bool, tokens up to and including the first ``<|im_end|>``.
        epsilon_low, epsilon_high: ratio clip range [1 - eps_low, 1 + eps_high].
        beta: KL weight.
        normalization: ``token`` or ``sequence`` (see module docstring).

    Returns:
        (scalar loss to minimise, LossStats).
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(logp.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * adv
    per_token = -torch.min(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if beta > 0:
        if ref_logp is None:
            raise ValueError("grpo.beta > 0 needs reference log-probs (ref_logp is None)")
        kl = kl_k3(logp, ref_logp)
        per_token = per_token + beta * kl
    loss = masked_mean(per_token, completion_mask, normalization)
    with torch.no_grad():
        low = (ratio < 1 - epsilon_low) & (adv < 0)  # the clip is what binds: no gradient from these tokens
        high = (ratio > 1 + epsilon_high) & (adv > 0)
        stats = LossStats(
            loss=float(loss),
            kl=float(masked_mean(kl, completion_mask, "token")),
            clip_frac=float(masked_mean((low | high).float(), completion_mask, "token")),
            clip_frac_low=float(masked_mean(low.float(), completion_mask, "token")),
            clip_frac_high=float(masked_mean(high.float(), completion_mask, "token")),
            ratio_mean=float(masked_mean(ratio, completion_mask, "token")),
        )
    return loss, stats
