"""Per-position token choice and confidence, as Dream's ``sample_tokens`` (``generation_utils.py``),
and the model's own token probability that fast decoding's threshold tests.

The logits are tempered, truncated (top-p, then top-k) and softmaxed once; the token is sampled from
that distribution (argmax at temperature 0) and every confidence is read off the *same* processed
distribution, so truncation changes the confidences exactly as it does in Dream.

Truncation works on a candidate set rather than the whole vocabulary: the most likely tokens per
row (``torch.topk`` of 64, then 1,024, then a sort of the whole vocabulary) until every row's
nucleus fits inside it. Tokens outside the nucleus have probability zero, so sampling, entropy and
margins over the candidates equal Dream's full-vocabulary computation; what it saves is a sort and
a multinomial over all V columns for every masked position at every step, which were half of a CPU
decode step (BENCHMARKS.md `## decoding`). One difference: top-k keeps exactly k tokens where the
k-th probability ties with the next (Dream keeps the ties).

Sampling uses ``torch.multinomial`` with an explicit generator rather than Dream's
``torch.distributions.Categorical`` (which cannot take one), so a call is reproducible without
touching the global RNG.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Dream adds this inside log() so that zero probabilities (truncated tokens) do not give NaN entropy.
_LOG_EPS = 1e-10
# Candidate widths tried for top-p before sorting the whole vocabulary: a trained model's nucleus at
# top_p 0.95 is a handful of tokens. Two tries only: on a GPU each try costs a topk and a sync, and
# a wide nucleus (near-flat rows) is cheaper to get from one full sort than from more tries.
_WIDTHS = (64, 1024)
# A logit this far below its row's best has probability < e^-86 < 2^-124: subnormal (< 2^-126) or
# close enough that the softmax computes it on the same slow path.
_UNDERFLOW_GAP = 86.0
# Those tokens are dropped before top-p only while the nucleus cannot reach them: their more likely
# tokens hold all but ~V * 2^-124 of the mass, which float32 cumulative sums keep above 0.99.
_TOP_P_WITHOUT_UNDERFLOW = 0.99


class TokenChoice(NamedTuple):
    """For N positions: chosen token ids (N,) and the alg's confidence (N,)."""

    tokens: torch.Tensor
    confidence: torch.Tensor


class Truncated(NamedTuple):
    """A processed distribution over candidate tokens: ``probs`` (N, C) sums to 1 per row over
    ``ids`` (N, C) vocabulary ids; ``ids`` is None when C is the whole vocabulary in order."""

    probs: torch.Tensor
    ids: torch.Tensor | None


def _nucleus_width(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, ids) of the top candidates, wide enough that every row's top-p nucleus is inside.

    The nucleus of a row fits in its top ``w`` tokens once their mass exceeds ``top_p`` (the token
    after them is then cut); when no tried width holds every row's nucleus, the whole vocabulary is
    sorted.
    """
    for width in _WIDTHS:
        if width >= probs.shape[-1]:
            break
        values, ids = torch.topk(probs, width, dim=-1)  # sorted, most likely first
        if bool((values.sum(dim=-1) > top_p).all()):
            return values, ids
    return torch.sort(probs, dim=-1, descending=True)


def _without_underflow(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` (changed in place) with -inf where the softmax would give a number below 2^-124, so
    it gives 0.

    At a low temperature most of the vocabulary sits far below the row's best logit (T 0.2 scales
    the gaps by 5), and the CPU computes each of those subnormal exponentials in a slow microcode
    path: the softmax of the masked rows took 12x as long as at T 1, a tenth of a fast decode
    (BENCHMARKS.md `## decoding`). A token this unlikely is never inside a top-p nucleus, the
    others' probabilities are the same numbers (their sum >= 1 cannot register terms below 2^-100
    except through a rounding tie at that scale), so sampling and confidences do not change.
    """
    floor = logits.amax(dim=-1, keepdim=True) - _UNDERFLOW_GAP
    return logits.masked_fill_(logits < floor, float("-inf"))


def processed_probs(
    logits: torch.Tensor, temperature: float, top_p: float | None, top_k: int | None
) -> Truncated:
    """(N, V) logits -> the distribution after temperature, top-p (smallest set of most likely
    tokens whose mass reaches ``top_p``, always >= 1 token) and then top-k."""
    logits = logits.float()
    if temperature > 0:
        logits = logits / temperature
    use_top_p = top_p is not None and top_p < 1
    if use_top_p and top_p <= _TOP_P_WITHOUT_UNDERFLOW:
        logits = _without_underflow(logits if temperature > 0 else logits.clone())  # not the caller's
    probs = logits.softmax(dim=-1)
    if not use_top_p and top_k is None:
        return Truncated(probs, None)
    if use_top_p:
        values, ids = _nucleus_width(probs, top_p)
        before = values.cumsum(dim=-1) - values  # mass of the more likely tokens
        keep = before <= top_p  # the token that crosses top_p stays, so the kept mass >= top_p
        keep[:, 0] = True
    else:
        values, ids = torch.topk(probs, min(top_k, probs.shape[-1]), dim=-1)
        keep = torch.ones_like(values, dtype=torch.bool)
    if top_k is not None and top_k < values.shape[-1]:
        keep[:, top_k:] = False
    kept = values * keep
    return Truncated(kept / kept.sum(dim=-1, keepdim=True), ids)


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
    probs, ids = processed_probs(logits, temperature, top_p, top_k)
    if temperature > 0:
        picks = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    else:
        picks = probs.argmax(dim=-1)
    tokens = picks if ids is None else ids.gather(-1, picks[:, None]).squeeze(-1)
    if alg == "topk_margin":
        top2 = torch.topk(probs, min(2, probs.shape[-1]), dim=-1).values
        confidence = top2[:, 0] - (top2[:, 1] if top2.shape[-1] > 1 else 0.0)
    elif alg == "entropy":
        confidence = (probs * torch.log(probs + _LOG_EPS)).sum(dim=-1)
    else:
        confidence = probs.gather(-1, picks[:, None]).squeeze(-1)
    return TokenChoice(tokens, confidence)


def model_probability(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(N,) probability of ``tokens`` (N,) under the model's own distribution: the softmax of the
    raw (N, V) ``logits``, before temperature and truncation.

    This is what a confidence threshold tests (Fast-dLLM, arXiv 2505.22618: the marginal
    p(x_i | context); its LLaDA decoder reads it off the raw logits). The processed distribution
    that :func:`choose_tokens` samples from is the wrong scale for it: at temperature 0.2 a token
    the model gives 0.65 against a runner-up's 0.35 reads 0.96 there, so any tau would pass.
    """
    logits = logits.float()
    return (logits.gather(-1, tokens[:, None]).squeeze(-1) - logits.logsumexp(dim=-1)).exp()
