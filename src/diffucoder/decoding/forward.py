"""Where each denoising step gets its logits: a full forward, or Fast-dLLM's approximate block caches.

Every source answers one question: "the logits predicting positions ``[start, end)`` of the canvas"
(the current block), already realigned for the AR shift (hidden state ``j - 1`` predicts token ``j``,
reference §1.2). ``refresh=True`` marks the first step of a block.

The caches (reference §2.3) are approximate because attention is bidirectional: K/V of a cached
position depend on every other token, including masks that later steps fill in. They are refreshed
once per block by a full forward whose K/V we keep per layer:

- prefix: keep K/V of columns ``< start - 1``; each step feeds ``x[start - 1:]``.
- dual:   also keep K/V of columns ``>= end``; each step feeds only ``x[start - 1:end]``.

The window starts one column left of the block because the block's first token is predicted by
the hidden state before it. A cached step rebuilds a fresh ``DynamicCache`` from the kept tensors:
HF's cache appends the window's K/V during the forward, and those must not leak into the next
step. Key order inside the cache does not matter (attention is bidirectional and RoPE was applied
when K was computed), so the dual cache simply stores "left of the window" then "right of the block".
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Protocol

import torch
from transformers import DynamicCache

from diffucoder.decoding.layout import Canvas
from diffucoder.model import DiffusionLM
from diffucoder.model.shift import logits_at_positions


class LogitsSource(Protocol):
    def __call__(self, canvas: Canvas, start: int, end: int, refresh: bool) -> torch.Tensor:
        """(B, end - start, V) logits predicting the tokens at columns ``[start, end)``."""
        ...


class FullForward:
    """No cache: run the model over the whole canvas every step (the exact Dream sampler)."""

    def __init__(self, model: DiffusionLM):
        self.model = model

    def __call__(self, canvas: Canvas, start: int, end: int, refresh: bool) -> torch.Tensor:
        mask = canvas.allowed(slice(None), slice(None)) if canvas.padded else None
        logits = self.model(canvas.x, attention_mask=mask, position_ids=canvas.position_ids)
        return logits_at_positions(logits)[:, start:end]


class _BlockCache(ABC):
    """Shared machinery of the prefix and dual caches; subclasses choose which columns are cached."""

    def __init__(self, model: DiffusionLM):
        self.model = model
        # transformers 5.x renamed the forward's cache argument (`past_key_values` -> `cache`, the old
        # name warns); use whichever this version's forward declares.
        params = inspect.signature(type(model.hf).forward).parameters
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer (B, kv_heads, C, head_dim)
        self.cached_cols: torch.Tensor | None = None  # (C,) canvas columns held in `kept`, in cache order

    @abstractmethod
    def cached_columns(self, canvas: Canvas, start: int, end: int) -> torch.Tensor:
        """(C,) canvas columns whose K/V are kept from the refresh forward."""

    @abstractmethod
    def window(self, canvas: Canvas, start: int, end: int) -> slice:
        """The columns recomputed at each cached step (starting at ``start - 1``)."""

    def _hf_forward(self, canvas, query_cols, key_cols, cache, keep: torch.Tensor) -> torch.Tensor:
        allowed = canvas.allowed(query_cols, key_cols)
        out = self.model.hf(
            input_ids=canvas.x[:, query_cols],
            attention_mask=self.model._kernel_mask(allowed),
            position_ids=canvas.positions(query_cols),
            use_cache=True,
            logits_to_keep=keep,
            **{self.cache_kwarg: cache},
        )
        return out.logits

    def _refresh(self, canvas: Canvas, start: int, end: int) -> torch.Tensor:
        total = canvas.x.shape[1]
        cache = DynamicCache()
        everything = torch.arange(total, device=canvas.x.device)
        # hidden states start-1 .. end-2 predict tokens start .. end-1
        keep = torch.arange(start - 1, end - 1, device=canvas.x.device)
        logits = self._hf_forward(canvas, slice(None), everything, cache, keep)
        cols = self.cached_columns(canvas, start, end)
        self.kept = [(layer.keys[:, :, cols], layer.values[:, :, cols]) for layer in cache.layers]
        self.cached_cols = cols
        return logits

    def __call__(self, canvas: Canvas, start: int, end: int, refresh: bool) -> torch.Tensor:
        if refresh or self.cached_cols is None:
            return self._refresh(canvas, start, end)
        win = self.window(canvas, start, end)
        window_cols = torch.arange(canvas.x.shape[1], device=canvas.x.device)[win]
        key_cols = torch.cat([self.cached_cols, window_cols])
        cache = DynamicCache(ddp_cache_data=self.kept)
        keep = torch.arange(end - start, device=canvas.x.device)  # window starts at start - 1
        return self._hf_forward(canvas, win, key_cols, cache, keep)


class PrefixCache(_BlockCache):
    """Reuse K/V left of the block's window; recompute the block and everything right of it."""

    def cached_columns(self, canvas: Canvas, start: int, end: int) -> torch.Tensor:
        return torch.arange(start - 1, device=canvas.x.device)

    def window(self, canvas: Canvas, start: int, end: int) -> slice:
        return slice(start - 1, None)


class DualCache(_BlockCache):
    """Reuse K/V left of the window and right of the block; recompute only the block."""

    def cached_columns(self, canvas: Canvas, start: int, end: int) -> torch.Tensor:
        device = canvas.x.device
        return torch.cat(
            [torch.arange(start - 1, device=device), torch.arange(end, canvas.x.shape[1], device=device)]
        )

    def window(self, canvas: Canvas, start: int, end: int) -> slice:
        return slice(start - 1, end)


def make_logits_source(model: DiffusionLM, kv_cache: str) -> LogitsSource:
    """The logits source for ``decoding.fast.kv_cache`` (``none`` | ``prefix`` | ``dual``)."""
    sources = {"none": FullForward, "prefix": PrefixCache, "dual": DualCache}
    if kv_cache not in sources:
        raise ValueError(f"decoding.fast.kv_cache={kv_cache!r}; expected one of {sorted(sources)}")
    return sources[kv_cache](model)
