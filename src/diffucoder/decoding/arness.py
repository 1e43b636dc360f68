"""AR-ness of a decoding order, from decode traces (paper §4.1, App. A.2).

Let ``p_t`` be the completion position unmasked at step ``t`` (t = 1..T, T = L: one token per step).

- local@k (next-token pattern): step t scores 1 iff the k positions decoded just before it are
  ``p_t - 1, p_t - 2, ..., p_t - k`` in that order, i.e. the new token extends a left-to-right run of
  k + 1 consecutive positions. ``local@k = (1/T) sum_t``. Non-increasing in k.
- global@k (first-mask selection): step t scores 1 iff ``p_t`` is among the k leftmost positions
  still masked just before step t. ``global@k = (1/T) sum_t``. Non-decreasing in k.

Steps t <= k (fewer than k earlier decodes): the paper leaves them open. We count the prompt as
decoded history, in left-to-right order, ending just left of the completion (virtual positions
-1, -2, ...), and keep the paper's 1/T. So step 1 scores on local@k iff it decodes position 0 (the
token right after the prompt), and a strictly left-to-right order scores 1.0 for every k, as an AR
model must. Nothing is dropped or counted as 0 by fiat.

Traces from steps that commit several tokens (steps < L) are read as if those tokens were decoded
one by one, left to right; the metrics are defined for one token per step, and this is the
reading that gives a left-to-right block order the score 1.0.
"""

from __future__ import annotations

import torch


def decode_order(trace: torch.Tensor) -> torch.Tensor:
    """(..., L) step per position -> (..., L) positions in the order they were decoded.

    Raises:
        ValueError: a position was never unmasked (negative step).
    """
    if trace.dim() < 1 or trace.shape[-1] == 0:
        raise ValueError(f"trace must be (..., L) with L >= 1, got shape {tuple(trace.shape)}")
    if (trace < 0).any():
        raise ValueError("trace has positions that were never unmasked (negative step)")
    return torch.sort(trace, dim=-1, stable=True).indices


def local_arness(trace: torch.Tensor, k: int) -> torch.Tensor:
    """local@k per sequence: (..., L) trace -> (...) float in [0, 1]."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = decode_order(trace)
    length = order.shape[-1]
    # the prompt as history: virtual positions -k .. -1, decoded left to right before the completion
    history = torch.arange(-k, 0, device=order.device).expand(*order.shape[:-1], k)
    seq = torch.cat([history, order], dim=-1)
    hits = torch.ones_like(order, dtype=torch.bool)
    for j in range(1, k + 1):
        hits &= seq[..., k - j : k - j + length] == order - j
    return hits.float().mean(dim=-1)


def global_arness(trace: torch.Tensor, k: int) -> torch.Tensor:
    """global@k per sequence: (..., L) trace -> (...) float in [0, 1]."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = decode_order(trace)
    length = order.shape[-1]
    # rank of p_t among the positions still masked before step t = how many later steps decode
    # a position left of p_t
    later = torch.ones(length, length, dtype=torch.bool, device=order.device).triu(diagonal=1)
    left_of = order[..., None, :] < order[..., :, None]  # [t, s]: p_s < p_t
    rank = (left_of & later).sum(dim=-1)
    return (rank < k).float().mean(dim=-1)


def arness_summary(
    trace: torch.Tensor, local_ks: range = range(1, 10), global_ks: range = range(1, 5)
) -> dict[str, float]:
    """Batch means and stds for the paper's plots (local k = 1..9, global k = 1..4).

    Returns:
        ``{"local@1": mean, "local@1_std": std, ..., "global@4": mean, "global@4_std": std}``.
    """
    summary: dict[str, float] = {}
    for name, fn, ks in (("local", local_arness, local_ks), ("global", global_arness, global_ks)):
        for k in ks:
            values = fn(trace, k).reshape(-1)
            summary[f"{name}@{k}"] = values.mean().item()
            summary[f"{name}@{k}_std"] = values.std(unbiased=False).item()
    return summary
