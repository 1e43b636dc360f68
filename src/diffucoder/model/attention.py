"""``sdpa_fp32``: PyTorch SDPA computed in float32 even inside a bfloat16 autocast region.

Why: under ``precision: bf16-mixed`` on CPU the linear layers gain 2-3x from bfloat16 matmuls, but
the CPU's bfloat16 attention backward is ~2x slower than its float32 one, which ate most of the gain
(``benchmarks/bench_precision.py``, BENCHMARKS.md ``## train``). Running only the attention kernel
in float32 keeps both wins. Outside autocast the casts are no-ops, so a model loaded with this
implementation computes exactly what ``sdpa`` computes.

Registered with transformers' ``AttentionInterface`` on import; ``diffusion_lm`` imports this module,
so every path that builds or loads a :class:`~diffucoder.model.DiffusionLM` can name it. The choice is
a runtime setting (``model.attn_implementation``), not saved in checkpoints' ``config.json``.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

SDPA_FP32 = "sdpa_fp32"


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
        return sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )


AttentionInterface.register(SDPA_FP32, sdpa_fp32_attention_forward)
