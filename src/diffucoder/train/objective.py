"""The masked-diffusion ELBO used by training stages 1-3 (paper Eq. 1/11, §B.1).

Forward process: absorbing diffusion with alpha_t = 1 - t. Each sequence draws one
t = (1 - eps) * u + eps, u ~ U(0, 1), and every maskable token becomes ``<|mask|>`` with
probability t. Loss (DiffuLLaMA/DiffuCoder normalisation, apple/ml-diffucoder#9):

    loss = sum over masked targets of CE(x0 | x_t) / t   /   number of masked targets in the batch

The AR shift is kept: ``logits[:, :-1]`` are scored against ``input_ids[:, 1:]`` and the loss mask
is the masked-ness of the targets. Position 0 is never masked because no logit predicts it.

Stage-1 extras (paper §B.1) are small pure functions so the training loop composes them:
random-length truncation (1% of samples) and an un-noised random prefix (1% of samples).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class NoisedBatch(NamedTuple):
    """Output of :func:`forward_noise`.

    Attributes:
        noisy_ids: (B, T) input ids with masked positions replaced by the mask id.
        masked: (B, T) bool, True where a token was replaced (position 0 is always False).
        t: (B,) float32, the per-sequence masking probability (also the ELBO weight's denominator).
    """

    noisy_ids: torch.Tensor
    masked: torch.Tensor
    t: torch.Tensor


def forward_noise(
    input_ids: torch.Tensor,
    maskable: torch.Tensor | None,
    mask_token_id: int,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
) -> NoisedBatch:
    """Mask each maskable token with probability t, one t per sequence.

    Args:
        input_ids: (B, T) clean token ids.
        maskable: (B, T) bool, positions that may be noised (e.g. response tokens in SFT);
            ``None`` = every position. Position 0 is excluded regardless (the shift leaves it unscored).
        mask_token_id: id of ``<|mask|>``.
        eps: lower bound of t, keeps the 1/t weight <= 1/eps.
        generator: explicit RNG (on the same device as ``input_ids``) so masks can be regenerated.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    b, seq_len = input_ids.shape
    device = input_ids.device
    if maskable is None:
        maskable = torch.ones(b, seq_len, dtype=torch.bool, device=device)
    elif maskable.shape != input_ids.shape:
        raise ValueError(
            f"maskable shape {tuple(maskable.shape)} != input_ids shape {tuple(input_ids.shape)}"
        )
    maskable = maskable.bool().clone()
    maskable[:, 0] = False
    u = torch.rand(b, generator=generator, device=device)
    t = (1.0 - eps) * u + eps  # (B,)
    draw = torch.rand(b, seq_len, generator=generator, device=device)
    masked = (draw < t[:, None]) & maskable  # (B, T)
    noisy_ids = torch.where(masked, torch.full_like(input_ids, mask_token_id), input_ids)
    return NoisedBatch(noisy_ids=noisy_ids, masked=masked, t=t)


def scored_logit_positions(masked: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the logit positions whose prediction is scored, i.e. ``masked`` shifted left by one.

    Hand it to ``DiffusionLM(..., logits_at=...)`` so the LM head runs only where the loss looks.
    """
    positions = torch.zeros_like(masked, dtype=torch.bool)
    positions[:, :-1] = masked[:, 1:]
    return positions


def elbo_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, masked: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Shifted, 1/t-weighted cross-entropy over masked targets, averaged per masked token.

    Args:
        logits: (B, T, V) model output on the noisy ids, ``logits[:, i]`` predicts token i + 1; or
            (N, V), already gathered at :func:`scored_logit_positions` (``DiffusionLM(logits_at=)``).
        input_ids: (B, T) clean ids (the targets).
        masked: (B, T) bool from :func:`forward_noise`.
        t: (B,) masking probabilities.

    Returns:
        (loss scalar with grad, stats) where stats has ``loss``, ``ce`` (unweighted mean CE over
        masked targets), ``masked_tokens`` and ``mask_ratio``. With no masked target the loss is a
        zero that still carries the graph (so every rank runs the same backward).
    """
    gathered = logits.dim() == 2
    if not gathered and (logits.dim() != 3 or logits.shape[:2] != input_ids.shape):
        raise ValueError(f"logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)}")
    if masked.shape != input_ids.shape or t.shape != input_ids.shape[:1]:
        raise ValueError(
            f"masked {tuple(masked.shape)} / t {tuple(t.shape)} do not match input_ids {tuple(input_ids.shape)}"
        )
    target_masked = masked[:, 1:]  # (B, T-1): which targets were noised
    n_masked = int(target_masked.sum())
    if gathered and logits.shape[0] != n_masked:
        raise ValueError(f"gathered logits have {logits.shape[0]} rows for {n_masked} masked targets")
    if n_masked == 0:
        zero = logits.sum() * 0.0
        return zero, {"loss": 0.0, "ce": 0.0, "masked_tokens": 0.0, "mask_ratio": 0.0}
    # Gather only masked positions before the float32 upcast: at 7B scale the full (B, T, V)
    # float32 logits would not fit.
    pred = (logits if gathered else logits[:, :-1][target_masked]).float()  # (N, V)
    target = input_ids[:, 1:][target_masked]  # (N,)
    weight = (1.0 / t.float())[:, None].expand_as(target_masked)[target_masked]  # (N,)
    ce = F.cross_entropy(pred, target, reduction="none")  # (N,)
    loss = (ce * weight).sum() / n_masked
    stats = {
        "loss": float(loss.detach()),
        "ce": float(ce.detach().mean()),
        "masked_tokens": float(n_masked),
        "mask_ratio": n_masked / target_masked.numel(),
    }
    return loss, stats


def random_truncation(
    input_ids: torch.Tensor,
    prob: float = 0.01,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability ``prob`` per sample, cut the sample to a random length in [2, T] (paper §B.1).

    Packed batches keep their (B, T) shape, so the cut tail is marked rather than removed: it is
    replaced with ``pad_token_id`` (when given) and excluded from the returned ``keep`` mask, which
    the loop ANDs into ``maskable`` and uses as the padding mask.

    Returns:
        (ids, keep): (B, T) ids and (B, T) bool, True for positions inside the kept length.
    """
    b, seq_len = input_ids.shape
    device = input_ids.device
    chosen = torch.rand(b, generator=generator, device=device) < prob
    lengths = torch.randint(2, seq_len + 1, (b,), generator=generator, device=device)
    lengths = torch.where(chosen, lengths, torch.full_like(lengths, seq_len))
    keep = torch.arange(seq_len, device=device)[None, :] < lengths[:, None]
    ids = input_ids if pad_token_id is None else input_ids.masked_fill(~keep, pad_token_id)
    return ids, keep


def random_prefix_condition(
    maskable: torch.Tensor, prob: float = 0.01, generator: torch.Generator | None = None
) -> torch.Tensor:
    """With probability ``prob`` per sample, keep a random-length prefix un-noised (paper §B.1).

    Args:
        maskable: (B, T) bool, positions that may be noised.

    Returns:
        (B, T) bool: ``maskable`` with positions [0, L) cleared for the chosen samples, L uniform in
        [1, T - 1] so at least one position stays noisable.
    """
    b, seq_len = maskable.shape
    device = maskable.device
    chosen = torch.rand(b, generator=generator, device=device) < prob
    prefix = torch.randint(1, max(seq_len, 2), (b,), generator=generator, device=device)
    prefix = torch.where(chosen, prefix, torch.zeros_like(prefix))
    in_prefix = torch.arange(seq_len, device=device)[None, :] < prefix[:, None]
    return maskable & ~in_prefix
