"""Per-token log-probability estimates of completions under a masked diffusion LM (paper §2.3,
App. A.3-A.4; d1's diffu-GRPO).

A dLLM has no tractable token log-likelihood, so GRPO's ratios use Monte-Carlo scores from noised
copies of each rollout. Every estimator here builds its noised copies from a *local*
``torch.Generator`` seeded by the caller, so the policy, old-policy and reference passes that share
a seed see identical masks, and global RNG state is never touched (the released code reseeds
the global RNGs, which also steers rollout sampling).

- ``full_mask`` (d1): one pass with every completion token masked; per-token score = log p.
  Optionally each prompt token is also masked with probability ``p_mask_prompt`` (d1 uses 0.15).
- ``coupled`` (DiffuCoder, Eq. 13): the full-mask pass plus ``lambda`` complementary pairs. For a
  pair, t ~ U[t_min, 1 - t_min] (one scalar per micro-batch, as in the released code) and a uniform
  matrix R; copy 1 masks completion tokens with R < t, copy 2 masks exactly the others. A token's
  pair score is ``log p_1 / t`` if it was masked in copy 1, else ``log p_2 / (1 - t)``; the estimate
  is ``(log p_full + sum of pair scores) / (lambda + 1)``. Every token is scored once per pair
  ("full coverage"), and the two halves are antithetic (App. A.4).
- ``decoupled`` (ablation): the same passes, but copy 2 uses its own uniform draw at time 1 - t,
  so a token may be scored twice or not at all in a pair; each half is weighted as above, so the
  expectation equals the coupled one and only the variance differs.

The prompt is never masked in ``coupled``/``decoupled``. Completion positions after the first
``<|im_end|>`` (pads) are masked like any completion token (the rollout decoded them from masks too)
but are never scored; the caller multiplies by its completion mask.

The forward pass uses the rollout's attention layout (a 4-D mask hiding left padding and
real-token position ids, :func:`diffucoder.decoding.layout.make_canvas`), so a prompt is scored in
the same context it was decoded in (the released code passes neither mask nor position ids here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diffucoder.decoding.layout import make_canvas
from diffucoder.train.objective import scored_logit_positions


@dataclass(frozen=True)
class NoisedCopies:
    """The noised versions of one micro-batch that an estimator scores.

    Attributes:
        ids: (K, B, T) token ids of each copy (masked positions hold the mask id).
        masked: (K, B, L) bool, completion positions masked in each copy.
        weights: (K,) float, the factor a masked token's log-prob gets in that copy.
        combine: how per-copy scores become one estimate (see :func:`combine_scores`).
    """

    ids: torch.Tensor
    masked: torch.Tensor
    weights: torch.Tensor
    combine: str


def _uniform_t(generator: torch.Generator, t_min: float) -> float:
    u = torch.rand((), generator=generator, device=generator.device).item()
    return t_min + (1.0 - 2.0 * t_min) * u


def build_copies(
    sequences: torch.Tensor,
    prompt_len: int,
    prompt_valid: torch.Tensor,
    *,
    mask_token_id: int,
    estimator: str,
    generator: torch.Generator,
    pairs: int = 1,
    t_min: float = 0.2,
    p_mask_prompt: float = 0.0,
) -> NoisedCopies:
    """Draw the noised copies of ``sequences`` for one estimate.

    Args:
        sequences: (B, T) left-padded prompt (P columns) followed by the completion (L = T - P columns).
        prompt_len: P.
        prompt_valid: (B, P) bool, True = real prompt token (False = left padding, never masked).
        mask_token_id: id written at masked positions.
        estimator: ``coupled`` | ``decoupled`` | ``full_mask``.
        generator: the only source of randomness (same seed -> same copies).
        pairs: lambda, complementary pairs (coupled / decoupled).
        t_min: pair times are drawn from U[t_min, 1 - t_min].
        p_mask_prompt: ``full_mask`` only: probability of masking each real prompt token.
    """
    batch, total = sequences.shape
    gen_len = total - prompt_len
    device = sequences.device
    all_masked = torch.ones(batch, gen_len, dtype=torch.bool, device=device)
    copies = [all_masked]
    weights = [1.0]
    prompt_masked = torch.zeros(batch, prompt_len, dtype=torch.bool, device=device)
    if estimator == "full_mask":
        if p_mask_prompt > 0:
            draw = torch.rand(batch, prompt_len, generator=generator, device=generator.device).to(device)
            prompt_masked = (draw < p_mask_prompt) & prompt_valid
    elif estimator in ("coupled", "decoupled"):
        for _ in range(pairs):
            t = _uniform_t(generator, t_min)
            first = torch.rand(batch, gen_len, generator=generator, device=generator.device).to(device) < t
            if estimator == "coupled":
                second = ~first  # complementary: every completion token masked exactly once per pair
            else:
                # independent draw at the mirrored time: same marginal distribution, no coupling
                second = (
                    torch.rand(batch, gen_len, generator=generator, device=generator.device).to(device)
                    < 1 - t
                )
            copies += [first, second]
            weights += [1.0 / t, 1.0 / (1.0 - t)]
    else:
        raise ValueError(f"grpo.estimator={estimator!r}: expected coupled, decoupled or full_mask")
    masked = torch.stack(copies)  # (K, B, L)
    ids = sequences.unsqueeze(0).repeat(len(copies), 1, 1)  # (K, B, T)
    ids[:, :, prompt_len:] = ids[:, :, prompt_len:].masked_fill(masked, mask_token_id)
    if prompt_masked.any():
        ids[0, :, :prompt_len] = ids[0, :, :prompt_len].masked_fill(prompt_masked, mask_token_id)
    combine = "single" if estimator == "full_mask" else "pairs"
    return NoisedCopies(ids, masked, torch.tensor(weights, dtype=torch.float32, device=device), combine)


def token_logps(
    model, ids: torch.Tensor, targets: torch.Tensor, prompt_len: int, prompt_valid: torch.Tensor
) -> torch.Tensor:
    """(N, L) log p(target completion token | noised ids) from one batched forward pass.

    Args:
        model: the diffusion LM (or an engine wrapping it); AR shift kept.
        ids: (N, T) noised sequences.
        targets: (N, T) clean sequences (only the completion columns are read).
        prompt_len: P.
        prompt_valid: (N, P) bool, real prompt tokens.
    """
    canvas = make_canvas(ids[:, :prompt_len], prompt_valid.long(), ids.shape[1] - prompt_len, 0)
    attention = canvas.allowed(slice(None), slice(None)) if canvas.padded else None
    # the LM head runs only at the positions whose (AR-shifted) logits predict completion tokens:
    # the prompt, often the longer part of a row, is never scored
    completion = torch.zeros_like(ids, dtype=torch.bool)
    completion[:, prompt_len:] = True
    logits = model(
        ids,
        attention_mask=attention,
        position_ids=canvas.position_ids,
        logits_at=scored_logit_positions(completion),
    )  # (N * L, V), row-major: row n * L + j predicts completion token j of row n
    logits = logits.float().reshape(ids.shape[0], ids.shape[1] - prompt_len, -1)
    target = targets[:, prompt_len:]
    return torch.gather(F.log_softmax(logits, dim=-1), -1, target.unsqueeze(-1)).squeeze(-1)


def combine_scores(logps: torch.Tensor, copies: NoisedCopies) -> torch.Tensor:
    """(K, B, L) per-copy log-probs -> (B, L) estimate (Eq. 13 with lambda pairs, or d1's single pass)."""
    if copies.combine == "single":
        return logps[0]
    weighted = logps * copies.weights[:, None, None] * copies.masked  # only masked tokens carry a score
    return weighted.sum(dim=0) / (1 + (len(copies.weights) - 1) // 2)


def estimate_logps(
    model,
    sequences: torch.Tensor,
    prompt_len: int,
    prompt_valid: torch.Tensor,
    *,
    mask_token_id: int,
    estimator: str,
    generator: torch.Generator,
    pairs: int = 1,
    t_min: float = 0.2,
    p_mask_prompt: float = 0.0,
) -> torch.Tensor:
    """(B, L) per-token log-prob estimates of the completions in ``sequences`` (with grad if enabled).

    All copies go through the model as one batch of ``K * B`` rows (K = 1 or 1 + 2 * pairs).
    """
    copies = build_copies(
        sequences,
        prompt_len,
        prompt_valid,
        mask_token_id=mask_token_id,
        estimator=estimator,
        generator=generator,
        pairs=pairs,
        t_min=t_min,
        p_mask_prompt=p_mask_prompt,
    )
    k, batch, total = copies.ids.shape
    flat = token_logps(
        model,
        copies.ids.reshape(k * batch, total),
        sequences.repeat(k, 1),
        prompt_len,
        prompt_valid.repeat(k, 1),
    )
    return combine_scores(flat.reshape(k, batch, -1), copies)
