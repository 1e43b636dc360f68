"""Attention masks for the diffusion LM: padding masks and stage-1 attention-mask annealing.

Convention everywhere in diffucoder: a boolean mask, ``True`` = the query may attend to the key.

Annealing (paper §B.1; DiffuLLaMA's ``get_anneal_attn_mask``): at optimizer step ``s`` with ratio
``r = min(1, (s + 1) / anneal_steps)``, the allowed-attention matrix is the causal lower triangle
OR an i.i.d. Bernoulli(r) matrix, drawn fresh each step and shared across the batch. At ``r = 1``
attention is fully bidirectional and no mask is needed at all.
"""

from __future__ import annotations

import torch


def anneal_ratio(step: int, anneal_steps: int) -> float:
    """``r = min(1, (step + 1) / anneal_steps)``; ``anneal_steps <= 0`` means no annealing (r = 1)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if anneal_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / anneal_steps)


def annealed_attention_mask(
    seq_len: int, ratio: float, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    """Causal OR Bernoulli(``ratio``) mask, shape (1, 1, T, T), shared across the batch.

    Returns ``None`` when ``ratio >= 1``: fully bidirectional, which the model runs without a mask
    (the fast path). ``ratio = 0`` gives the plain causal mask.

    Args:
        seq_len: T.
        ratio: the annealing ratio r in [0, 1] (see :func:`anneal_ratio`).
        generator: the RNG for the Bernoulli draw (explicit, so runs are reproducible and the
            global RNG is left alone); its device decides where the draw happens.
        device: where the returned mask lives.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"anneal ratio must be in [0, 1], got {ratio}")
    if ratio >= 1.0:
        return None
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    draw_device = generator.device if generator is not None else device
    random = torch.rand(seq_len, seq_len, generator=generator, device=draw_device).to(device) < ratio
    return (causal | random)[None, None]  # (1, 1, T, T)


def padding_to_attention_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 1/True = real token  ->  (B, 1, 1, T) bool: every query attends every real key.

    Attention stays bidirectional; only padded keys are hidden. Padded queries still attend the
    real keys, so no row is fully masked (which would give NaN in SDPA).
    """
    if padding_mask.dim() != 2:
        raise ValueError(f"padding mask must be (B, T), got shape {tuple(padding_mask.shape)}")
    return padding_mask.bool()[:, None, None, :]
