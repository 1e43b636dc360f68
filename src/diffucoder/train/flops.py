"""Model FLOPs per token and MFU (model FLOPs utilisation) for training runs.

Convention (PaLM appendix B): a training token costs ``6 * N`` FLOPs in the weight matmuls (2 forward,
4 backward) plus ``12 * L * H * T`` in attention (scores and weighted sum, forward and backward). A
diffusion LM attends bidirectionally, so the full T x T attention is real work here, not the half a
causal kernel could skip. Recomputation from gradient checkpointing is not counted: MFU measures
useful model FLOPs, so turning checkpointing on lowers it.

    mfu = tokens_per_sec * flops_per_token / (n_devices * peak_flops_per_device)

e.g. one H100 SXM at bf16 dense peak 989e12 FLOP/s.
"""

from __future__ import annotations


def flops_per_token(n_params: int, n_layers: int, hidden_size: int, seq_len: int) -> float:
    """Training FLOPs per token: ``6 N + 12 L H T`` (``n_params`` without embedding lookups is more exact)."""
    return 6.0 * n_params + 12.0 * n_layers * hidden_size * seq_len


def mfu(tokens_per_sec: float, flops_per_tok: float, n_devices: int, peak_flops_per_device: float) -> float:
    """Share of the hardware's peak spent on model FLOPs (0..1)."""
    if n_devices < 1 or peak_flops_per_device <= 0:
        raise ValueError(
            f"n_devices ({n_devices}) must be >= 1 and peak_flops_per_device ({peak_flops_per_device}) > 0"
        )
    return tokens_per_sec * flops_per_tok / (n_devices * peak_flops_per_device)
