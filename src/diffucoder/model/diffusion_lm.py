"""``DiffusionLM``: an HF Qwen2 causal LM run with bidirectional attention (paper §B.2:
Dream's architecture).

How attention is made non-causal in transformers 5.x: ``Qwen2Model.forward`` builds a causal mask
unless ``attention_mask`` is already a dict mapping each layer type to a prepared mask, and the SDPA
kernel falls back to ``is_causal=True`` when a layer gets no mask and the attention module says it
is causal. So we (1) clear ``is_causal`` on every attention module and (2) always hand the HF model
a prepared mask dict: ``None`` for full attention (lets SDPA pick its fastest maskless kernel) or a
4-D boolean/additive mask for padding and annealing. Nothing else changes: same weights, same head,
AR shift kept (``logits[:, i]`` predicts token ``i + 1``).

The module is a plain ``nn.Module`` holding the HF model as ``.hf``, so DeepSpeed/DDP wrap it like
any other model.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from diffucoder.model.attention import SDPA_FP32, SDPA_SHARED_KV
from diffucoder.model.masks import annealed_attention_mask, padding_to_attention_mask


def _disable_causal_attention(hf: PreTrainedModel) -> int:
    """Set ``is_causal = False`` on every attention module; returns how many were changed."""
    count = 0
    for module in hf.modules():
        if getattr(module, "is_causal", None) is True:
            module.is_causal = False
            count += 1
    return count


class DiffusionLM(nn.Module):
    """Bidirectional masked-diffusion LM around an HF causal-LM (Qwen2) model.

    Attributes:
        hf: the wrapped HF model (save/load, embeddings, generation configs live there).
        mask_token_id, pad_token_id, eos_token_id: read from ``hf.config`` (written by build_model).
    """

    def __init__(self, hf: PreTrainedModel):
        super().__init__()
        cfg = hf.config
        for field in ("mask_token_id", "pad_token_id", "eos_token_id"):
            if getattr(cfg, field, None) is None:
                raise ValueError(
                    f"HF config of {type(hf).__name__} lacks {field}; build it with build_model()"
                )
        if _disable_causal_attention(hf) == 0:
            raise ValueError(
                f"{type(hf).__name__}: found no attention module with an is_causal flag, so attention "
                "cannot be made bidirectional; only Qwen2-style HF models are supported"
            )
        if hf.config._attn_implementation not in ("sdpa", SDPA_SHARED_KV, SDPA_FP32, "eager"):
            raise ValueError(
                f"attn_implementation={hf.config._attn_implementation!r} cannot take arbitrary 4-D masks; "
                f"use 'sdpa', '{SDPA_FP32}' or 'eager'"
            )
        if hf.config._attn_implementation == "sdpa":  # the same kernel, minus K/V copies (model.attention)
            hf.set_attn_implementation(SDPA_SHARED_KV)
        hf.config.use_cache = False
        self.hf = hf
        self._layer_types = sorted(set(getattr(cfg, "layer_types", None) or ["full_attention"]))

    @property
    def mask_token_id(self) -> int:
        return int(self.hf.config.mask_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self.hf.config.pad_token_id)

    @property
    def eos_token_id(self) -> int:
        eos = self.hf.config.eos_token_id
        return int(eos[0] if isinstance(eos, list | tuple) else eos)

    @property
    def config(self):
        """The HF config (DeepSpeed and HF utilities look for ``model.config``)."""
        return self.hf.config

    def kernel_mask(self, allowed: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """Bool "may attend" mask -> the per-layer-type mask dict to pass as ``self.hf(attention_mask=...)``.

        Public for callers that run ``self.hf`` or its layers directly (decoding's block caches,
        ``decoding/forward.py``): handing HF this dict is what keeps attention bidirectional, since
        HF would otherwise build a causal mask.

        Args:
            allowed: 4-D bool, True = may attend; any shape that broadcasts to (B, heads, Q, K),
                e.g. a (B, 1, 1, K) key-padding mask. ``None`` = full attention, which lets SDPA
                take its maskless kernel.
        """
        if allowed is not None and self.hf.config._attn_implementation == "eager":
            # eager attention adds the mask to the scores: 0 where allowed, a large negative elsewhere
            dtype = self.hf.get_input_embeddings().weight.dtype
            allowed = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
                ~allowed, torch.finfo(dtype).min
            )
        return {layer_type: allowed for layer_type in self._layer_types}

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
        *,
        causal: bool = False,
    ) -> torch.Tensor:
        """Bidirectional forward pass.

        Args:
            input_ids: (B, T) token ids (masked positions hold ``mask_token_id``).
            attention_mask: ``None`` = full bidirectional; (B, T) 1 = real token (padding mask,
                still bidirectional); (B or 1, 1, T, T) bool, True = may attend (annealing, decoding).
            position_ids: (B, T); default 0..T-1. Pass shifted positions for left-padded prompts.
            logits_at: (B, T) bool; when given, the LM head runs only where it is True. Training
                scores a fraction of the positions (the masked ones), and the head over the
                vocabulary is a large share of the compute: a fifth of a tiny step, more with a
                152k vocabulary.
            causal: attend causally (each query sees its own and earlier positions), the AR model
                stage 1 starts from. SDPA gets ``is_causal`` instead of a (T, T) mask: the same
                attention, but the kernel may skip the key blocks above the diagonal and needs no
                mask tensor (on the tiny model's AVX2 CPU steps the gain stays within the noise
                between processes, at most ~4 %; BENCHMARKS.md `## train`). Excludes
                ``attention_mask``.

        Returns:
            (B, T, V) logits in the model dtype; ``logits[:, i]`` predicts token ``i + 1``. With
            ``logits_at``: (N, V), the rows of the selected positions in row-major order.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
        if causal and attention_mask is not None:
            raise ValueError("causal=True takes no attention_mask (it is the causal mask)")
        if attention_mask is None:
            allowed = None
        elif attention_mask.dim() == 2:
            allowed = padding_to_attention_mask(attention_mask)
        elif attention_mask.dim() == 4:
            if attention_mask.dtype != torch.bool:
                raise ValueError(
                    f"4-D attention_mask must be bool (True = may attend), got {attention_mask.dtype}"
                )
            allowed = attention_mask
        else:
            raise ValueError(
                f"attention_mask must be None, (B, T) or (B, 1, T, T); got {tuple(attention_mask.shape)}"
            )
        if logits_at is not None and logits_at.shape != input_ids.shape:
            raise ValueError(
                f"logits_at shape {tuple(logits_at.shape)} != input_ids shape {tuple(input_ids.shape)}"
            )
        kernel_causal = {}
        if causal and self.hf.config._attn_implementation == "eager":
            allowed = annealed_attention_mask(input_ids.shape[1], 0.0, device=input_ids.device)
        elif causal:
            kernel_causal = {"is_causal": True}  # read by transformers' SDPA attention
        hidden = self.hf.get_decoder()(
            input_ids=input_ids,
            attention_mask=self.kernel_mask(allowed),
            position_ids=position_ids,
            use_cache=False,
            **kernel_causal,
        ).last_hidden_state  # (B, T, H)
        if logits_at is not None:
            hidden = hidden[logits_at]  # (N, H)
        return self.hf.get_output_embeddings()(hidden)
