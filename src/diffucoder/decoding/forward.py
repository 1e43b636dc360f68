"""Where each denoising step gets its logits: a full forward, or Fast-dLLM's approximate block caches.

Every source answers one question: "the logits predicting positions ``[start, end)`` of the canvas"
(the current block), already realigned for the AR shift (hidden state ``j - 1`` predicts token ``j``,
as in Dream). ``refresh=True`` marks the first step of a block.

The caches (Fast-dLLM, arXiv 2505.22618) are approximate because attention is bidirectional: K/V of a cached
position depend on every other token, including masks that later steps fill in. They are refreshed
once per block by a full forward whose K/V we keep per layer:

- prefix: keep K/V of columns ``< start - 1``; each step feeds ``x[start - 1:]``.
- dual:   also keep K/V of columns ``>= end``; each step feeds only ``x[start - 1:end]``.

The window starts one column left of the block because the block's first token is predicted by
the hidden state before it. Key order inside the cache does not matter (attention is bidirectional
and RoPE was applied when K was computed), so the dual cache simply stores "left of the window"
then "right of the block". Each layer's kept K/V sit in one buffer per block with room for the
window after them (:class:`WindowLayer`): a cached step writes the window's K/V into that room,
where HF's ``DynamicCache`` would concatenate them to a copy of everything kept (a copy of the
whole cache per layer per step, ~12 % of a fast decode of the tiny model), and nothing of one step
leaks into the next because the next overwrites the same room.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Protocol

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from diffucoder.decoding.layout import Canvas
from diffucoder.model import DiffusionLM


class LogitsSource(Protocol):
    def __call__(self, canvas: Canvas, start: int, end: int, refresh: bool) -> torch.Tensor:
        """(B, end - start, V) logits predicting the tokens at columns ``[start, end)``."""
        ...


def hf_logits(
    model: DiffusionLM,
    canvas: Canvas,
    query_cols: torch.Tensor | slice,
    key_cols: torch.Tensor | slice,
    keep: torch.Tensor,
    **cache_args,
) -> torch.Tensor:
    """(B, len(keep), V) logits of the hidden states ``keep`` (indices into the query columns).

    Runs ``model.hf`` directly, with ``model.kernel_mask`` keeping attention bidirectional, for two
    arguments ``DiffusionLM.forward`` does not take: HF's KV cache, and ``logits_to_keep``, which
    runs the LM head on the block's rows only. A step needs the logits of one block, yet a
    full-canvas head (and the (B, T, V) realignment copy after it) costs ``T / block`` times more,
    and grows with every padded prompt column.
    """
    out = model.hf(
        input_ids=canvas.x[:, query_cols],
        attention_mask=model.kernel_mask(canvas.key_mask(key_cols)),
        position_ids=canvas.positions(query_cols),
        logits_to_keep=keep,
        **cache_args,
    )
    return out.logits


def predicting_states(start: int, end: int, offset: int, device: torch.device) -> torch.Tensor:
    """Indices of the hidden states that predict columns ``[start, end)`` (the AR shift: column
    ``j`` is predicted by hidden state ``j - 1``), counted from query column ``offset``."""
    return torch.arange(start - 1 - offset, end - 1 - offset, device=device)


class FullForward:
    """No cache: run the model over the whole canvas every step (the exact Dream sampler)."""

    def __init__(self, model: DiffusionLM):
        self.model = model

    def __call__(self, canvas: Canvas, start: int, end: int, refresh: bool) -> torch.Tensor:
        keep = predicting_states(start, end, 0, canvas.x.device)
        return hf_logits(self.model, canvas, slice(None), slice(None), keep, use_cache=False)


class WindowLayer(DynamicLayer):
    """One layer's K/V for a cached step: ``kept`` cached columns, then the window's columns.

    ``update`` writes the window's K/V in place and returns the whole buffer: the same tensors,
    in the same order, that ``DynamicLayer`` would build by concatenation.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, kept: int):
        super().__init__()
        self.keys, self.values, self.kept = keys, values, kept
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self.keys[:, :, self.kept :] = key_states
        self.values[:, :, self.kept :] = value_states
        return self.keys, self.values

    def get_seq_length(self, *args, **kwargs) -> int:
        return self.kept


class _BlockCache(ABC):
    """Shared machinery of the prefix and dual caches; subclasses choose which columns are cached."""

    def __init__(self, model: DiffusionLM):
        self.model = model
        # transformers 5.x renamed the forward's cache argument (`past_key_values` -> `cache`, the old
        # name warns); use whichever this version's forward declares.
        params = inspect.signature(type(model.hf).forward).parameters
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"
        # per layer (B, kv_heads, C + W, head_dim): the cached columns, then room for the window
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cached_cols: torch.Tensor | None = None  # (C,) canvas columns held in `buffers`, in cache order
        self.key_cols: torch.Tensor | None = None  # (C + W,) canvas columns of `buffers`

    @abstractmethod
    def cached_columns(self, canvas: Canvas, start: int, end: int) -> torch.Tensor:
        """(C,) canvas columns whose K/V are kept from the refresh forward."""

    @abstractmethod
    def window(self, canvas: Canvas, start: int, end: int) -> slice:
        """The columns recomputed at each cached step (starting at ``start - 1``)."""

    def _hf_forward(self, canvas, query_cols, key_cols, cache, keep: torch.Tensor) -> torch.Tensor:
        return hf_logits(
            self.model, canvas, query_cols, key_cols, keep, use_cache=True, **{self.cache_kwarg: cache}
        )

    def _refresh(self, canvas: Canvas, start: int, end: int) -> torch.Tensor:
        total = canvas.x.shape[1]
        cache = DynamicCache()
        everything = torch.arange(total, device=canvas.x.device)
        keep = predicting_states(start, end, 0, canvas.x.device)
        logits = self._hf_forward(canvas, slice(None), everything, cache, keep)
        cols = self.cached_columns(canvas, start, end)
        window_cols = everything[self.window(canvas, start, end)]
        buffer_cols = torch.cat([cols, window_cols])  # the window's part is overwritten each step
        self.buffers = [
            (layer.keys.index_select(2, buffer_cols), layer.values.index_select(2, buffer_cols))
            for layer in cache.layers
        ]
        self.cached_cols = cols
        self.key_cols = buffer_cols
        return logits

    def __call__(self, canvas: Canvas, start: int, end: int, refresh: bool) -> torch.Tensor:
        if refresh or self.cached_cols is None:
            return self._refresh(canvas, start, end)
        win = self.window(canvas, start, end)
        cache = DynamicCache()
        cache.layers = [WindowLayer(keys, values, len(self.cached_cols)) for keys, values in self.buffers]
        keep = predicting_states(start, end, win.start, canvas.x.device)
        return self._hf_forward(canvas, win, self.key_cols, cache, keep)


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
