"""Per-position token choice and confidence, as Dream's ``sample_tokens`` (reference §2.1).

The logits are tempered, truncated (top-p, then top-k) and softmaxed once; the token is sampled from
that distribution (argmax at temperature 0) and every confidence is read off the *same* processed
distribution, so truncation changes the confidences exactly as it does in Dream.

Sampling uses ``torch.multinomial`` with an explicit generator rather than Dream's
``torch.distributions.Categorical`` (which cannot take one), so a call is reproducible without
touching the global RNG.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Dream adds this inside log() so that zero probabilities (truncated tokens) do not give NaN entropy.
_LOG_EPS = 1e-10


class TokenChoice(NamedTuple):
    """For N positions: chosen token ids (N,), the alg's confidence (N,) and p(token) (N,)."""

    tokens: torch.Tensor
    confidence: torch.Tensor
    probability: torch.Tensor


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p`` (always >= 1 token)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative > top_p
    # shift right: the token that crosses top_p stays, so the kept mass is >= top_p
    remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, torch.finfo(logits.dtype).min)


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits per row."""
    top_k = min(top_k, logits.size(-1))
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)


def processed_probs(
    logits: torch.Tensor, temperature: float, top_p: float | None, top_k: int | None
) -> torch.Tensor:
    """(N, V) logits -> (N, V) float32 probabilities after temperature, top-p and top-k."""
    logits = logits.float()
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    return logits.softmax(dim=-1)


def choose_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float | None,
    top_k: int | None,
    alg: str,
    generator: torch.Generator | None,
) -> TokenChoice:
    """Pick a token for each of N masked positions and score how confident the pick is.

    Args:
        logits: (N, V) logits for the N positions (already realigned for the AR shift).
        temperature, top_p, top_k: as in :class:`~diffucoder.decoding.config.DecodingConfig`.
        alg: ``maskgit_plus`` (confidence = p(token)), ``topk_margin`` (p_top1 - p_top2),
            ``entropy`` (sum p log p, larger = more confident) or ``origin`` (confidence = p(token);
            origin never ranks by it).
        generator: RNG for sampling at temperature > 0.

    Returns:
        TokenChoice of (N,) tensors.
    """
    probs = processed_probs(logits, temperature, top_p, top_k)
    if temperature > 0:
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    else:
        tokens = probs.argmax(dim=-1)
    probability = probs.gather(-1, tokens[:, None]).squeeze(-1)
    if alg == "topk_margin":
        top2 = torch.topk(probs, 2, dim=-1).values
        confidence = top2[:, 0] - top2[:, 1]
    elif alg == "entropy":
        confidence = (probs * torch.log(probs + _LOG_EPS)).sum(dim=-1)
    else:
        confidence = probability
    return TokenChoice(tokens, confidence, probability)
