"""diffucoder's attention functions: transformers' SDPA with two changes.

``sdpa_fp32``: PyTorch SDPA computed in float32 even inside a bfloat16 autocast region.

Why: under ``precision: bf16-mixed`` on CPU the linear layers gain 2-3x from bfloat16 matmuls, but
the CPU's bfloat16 attention backward is ~2x slower than its float32 one, which ate most of the gain
(``benchmarks/bench_precision.py``, BENCHMARKS.md ``## train``). Running only the attention kernel
in float32 keeps both wins. Outside autocast the casts are no-ops, so a model loaded with this
implementation computes exactly what ``sdpa`` computes.

Registered with transformers' ``AttentionInterface`` on import; ``diffusion_lm`` imports this module,
so every path that builds or loads a :class:`~diffucoder.model.DiffusionLM` can name it. The choice is
a runtime setting (``model.attn_implementation``), not saved in checkpoints' ``config.json``.

Masked inference on CPU shares K/V heads: with a grouped-query model (Qwen2: fewer K/V heads than
query heads) and a mask, transformers copies every K/V head once per query head (``repeat_kv``)
before SDPA, because CUDA's fast kernels take no mask with ``enable_gqa``. PyTorch's CPU kernel does,
and gives bit-identical outputs without the copies, which is what decoding with padded prompts runs
every step (the copy of the whole KV cache per layer was ~6 % of a fast decode's CPU time,
BENCHMARKS.md ``## decoding``). Only without gradients: the backward of the shared heads sums the
K/V gradients in another order (equal to rounding), and training keeps transformers' path.
:class:`~diffucoder.model.DiffusionLM` swaps ``sdpa`` for :data:`SDPA_SHARED_KV`, ``sdpa_fp32``
has it built in, so ``model.attn_implementation`` keeps its two SDPA names.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

SDPA_FP32 = "sdpa_fp32"
SDPA_SHARED_KV = "diffucoder_sdpa"


def sdpa_shared_kv_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except that a masked CPU call without gradients hands SDPA the
    K/V heads as they are (``enable_gqa``) instead of a ``repeat_kv`` copy."""
    groups = getattr(module, "num_key_value_groups", 1)
    if attention_mask is None or groups == 1 or query.device.type != "cpu" or torch.is_grad_enabled():
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    # a mask means transformers' own path would not be causal either (its is_causal needs no mask)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=kwargs.get("dropout", 0.0),
        scale=kwargs.get("scaling"), enable_gqa=True,
    )  # fmt: skip
    return out.transpose(1, 2).contiguous(), None


def sdpa_fp32_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention on float32 copies of q/k/v, with autocast off inside.

    Returns float32 attention output; the output projection after it is autocast again.
    """
    with torch.autocast(query.device.type, enabled=False):
        return sdpa_shared_kv_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )


AttentionInterface.register(SDPA_FP32, sdpa_fp32_attention_forward)
AttentionInterface.register(SDPA_SHARED_KV, sdpa_shared_kv_attention_forward)
