"""Where each denoising step gets its hidden states: a full forward, or Fast-dLLM's approximate block caches.

Every source answers one question: "the final hidden states that predict positions ``[start, end)``
of the canvas" (the current block), already realigned for the AR shift (hidden state ``j - 1``
predicts token ``j``, as in Dream). ``refresh=True`` marks the first step of a block. The sampler
runs the LM head itself, on the still-masked positions only (:func:`block_logits`): the logits of a
committed position are never read.

The caches (Fast-dLLM, arXiv 2505.22618) are approximate because attention is bidirectional: K/V of a cached
position depend on every other token, including masks that later steps fill in. They are refreshed
once per block by a full forward whose K/V we keep per layer:

- prefix: keep K/V of columns ``< start - 1``; each step feeds ``x[start - 1:]``.
- dual:   also keep K/V of columns ``>= end``; each step feeds only ``x[start - 1:end]``.

The window starts one column left of the block because the block's first token is predicted by
the hidden state before it. Key order inside the cache does not matter (attention is bidirectional
and RoPE was applied when K was computed), so the dual cache simply stores "left of the window"
then "right of the block". Each layer's kept K/V sit in one buffer per block with room for the
window after them: a cached step writes the window's K/V into that room, and nothing of one step
leaks into the next because the next overwrites the same room.

The model's decoder layers run through :func:`decoder_pass` rather than HF's ``Qwen2Model.forward``:
the same modules and the same tensor operations in the same order, so the same numbers, with two
differences that only remove work. The last layer computes queries, attention, output projection
and MLP for the block's predicting rows only (its K/V still cover every column, because the other
rows' keys are what those rows attend to); a refresh is a forward over the whole canvas, so this
drops most of its last layer. And the K/V of each layer go straight to the cache's buffers, without
HF's cache objects, mask construction and output classes around every call.

Every source runs only the batch rows it is asked for (``rows``: those whose block still has a
mask). With a confidence threshold the rows of a batch finish a block after different numbers of
steps, and the block goes on until the slowest is done: about half of the rows a step would
forward have nothing left to predict (BENCHMARKS.md `## decoding`). Their hidden states are never
read, and nothing they compute reaches the other rows (attention, norms and rotary work per row),
so leaving them out changes no token: on X2 the matmuls give bit-identical rows for any number of
rows from 6 up, and a step always feeds at least one row's whole window. A cache drops a finished
row's K/V when the row leaves: within a block the rows only shrink, and the next refresh starts
again with every row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.qwen2.modeling_qwen2 import eager_attention_forward, rotate_half

from diffucoder.decoding.layout import Canvas
from diffucoder.model import DiffusionLM

# (layer index, K, V) of the fed columns -> (K, V) that the layer's queries attend to
KeyValues = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class HiddenSource(Protocol):
    def __call__(
        self, canvas: Canvas, start: int, end: int, refresh: bool, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(R, end - start, H) final hidden states predicting the tokens at columns ``[start, end)``
        of the batch rows ``rows`` (ascending; None = all B rows). Within a block ``rows`` may only
        shrink from one call to the next."""
        ...


def _selected(canvas: Canvas, rows: torch.Tensor | None) -> Canvas:
    """The canvas restricted to ``rows``; the canvas itself when they are the whole batch."""
    return canvas if rows is None or len(rows) == canvas.x.shape[0] else canvas.select(rows)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as transformers' ``apply_rotary_pos_emb`` computes it, for one tensor (the last layer
    rotates fewer queries than keys)."""
    return (x * cos) + (rotate_half(x) * sin)


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    return x.view(*x.shape[:-1], -1, head_dim).transpose(1, 2)


def decoder_pass(
    model: DiffusionLM,
    canvas: Canvas,
    query_cols: slice,
    key_cols: torch.Tensor | slice,
    predicting: slice,
    key_values: KeyValues,
) -> torch.Tensor:
    """(B, len(predicting), H) final hidden states of the rows ``predicting`` (counted within
    ``query_cols``), bidirectional attention over the keys that ``key_values`` hands each layer.

    ``key_cols`` are the canvas columns of those keys, for the padding mask.
    """
    base = model.hf.get_decoder()
    config = model.hf.config
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)
    masks = model.kernel_mask(canvas.key_mask(key_cols))
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * len(base.layers)
    hidden = base.embed_tokens(canvas.x[:, query_cols])
    cos, sin = base.rotary_emb(hidden, canvas.positions(query_cols))
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
    last = len(base.layers) - 1
    for i, layer in enumerate(base.layers):
        attn = layer.self_attn
        normed = layer.input_layernorm(hidden)
        keys = _rotate(_heads(attn.k_proj(normed), attn.head_dim), cos, sin)
        values = _heads(attn.v_proj(normed), attn.head_dim)
        if i == last:  # only the predicting rows go on; every row's K/V are above
            hidden, normed = hidden[:, predicting], normed[:, predicting]
            cos, sin = cos[:, :, predicting], sin[:, :, predicting]
        queries = _rotate(_heads(attn.q_proj(normed), attn.head_dim), cos, sin)
        keys, values = key_values(i, keys, values)
        out, _ = attend(
            attn, queries, keys, values, masks[layer_types[i]], scaling=attn.scaling,
            dropout=attn.attention_dropout if attn.training else 0.0, sliding_window=attn.sliding_window,
        )  # fmt: skip
        hidden = hidden + attn.o_proj(out.reshape(*normed.shape[:-1], -1).contiguous())
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return base.norm(hidden)


def block_logits(model: DiffusionLM, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head on hidden states from a :class:`HiddenSource` (any leading shape)."""
    return model.hf.get_output_embeddings()(hidden)


def _predicting(start: int, end: int, offset: int) -> slice:
    """The hidden states that predict columns ``[start, end)`` (the AR shift: column ``j`` is
    predicted by hidden state ``j - 1``), counted from query column ``offset``."""
    return slice(start - 1 - offset, end - 1 - offset)


def _no_cache(layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return keys, values


class FullForward:
    """No cache: run the model over the whole canvas every step (the exact Dream sampler)."""

    def __init__(self, model: DiffusionLM):
        self.model = model

    def __call__(
        self, canvas: Canvas, start: int, end: int, refresh: bool, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        every = slice(None)
        return decoder_pass(
            self.model, _selected(canvas, rows), every, every, _predicting(start, end, 0), _no_cache
        )


class _BlockCache(ABC):
    """Shared machinery of the prefix and dual caches; subclasses choose which columns are cached."""

    def __init__(self, model: DiffusionLM):
        self.model = model
        # per layer (B, kv_heads, C + W, head_dim): the cached columns, then room for the window
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cached_cols: torch.Tensor | None = None  # (C,) canvas columns held in `buffers`, in cache order
        self.key_cols: torch.Tensor | None = None  # (C + W,) canvas columns of `buffers`
        self.rows: torch.Tensor | None = None  # (R,) batch rows held in `buffers`

    @abstractmethod
    def cached_columns(self, canvas: Canvas, start: int, end: int) -> torch.Tensor:
        """(C,) canvas columns whose K/V are kept from the refresh forward."""

    @abstractmethod
    def window(self, canvas: Canvas, start: int, end: int) -> slice:
        """The columns recomputed at each cached step (starting at ``start - 1``)."""

    def _refresh(self, canvas: Canvas, start: int, end: int) -> torch.Tensor:
        everything = torch.arange(canvas.x.shape[1], device=canvas.x.device)
        cols = self.cached_columns(canvas, start, end)
        buffer_cols = torch.cat([cols, everything[self.window(canvas, start, end)]])
        buffers = []

        def keep(layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # the window's part is overwritten by each cached step
            buffers.append((keys.index_select(2, buffer_cols), values.index_select(2, buffer_cols)))
            return keys, values

        every = slice(None)
        hidden = decoder_pass(self.model, canvas, every, every, _predicting(start, end, 0), keep)
        self.buffers, self.cached_cols, self.key_cols = buffers, cols, buffer_cols
        return hidden

    def _keep_rows(self, rows: torch.Tensor) -> None:
        """Drop the buffers' rows that are not in ``rows`` (a subset of the rows held)."""
        held = self.rows
        if len(rows) == len(held):  # a subset of the same size is the same rows
            return
        if len(rows) > len(held):
            raise ValueError(f"rows {rows.tolist()} are not a subset of the cached rows {held.tolist()}")
        keep = torch.isin(held, rows)
        self.buffers = [(keys[keep], values[keep]) for keys, values in self.buffers]
        self.rows = rows

    def __call__(
        self, canvas: Canvas, start: int, end: int, refresh: bool, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        if rows is None:
            rows = torch.arange(canvas.x.shape[0], device=canvas.x.device)
        if refresh or self.cached_cols is None:
            hidden = self._refresh(_selected(canvas, rows), start, end)
            self.rows = rows
            return hidden
        self._keep_rows(rows)
        canvas = _selected(canvas, rows)
        win = self.window(canvas, start, end)
        kept = len(self.cached_cols)

        def write_window(
            layer: int, keys: torch.Tensor, values: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            cached_keys, cached_values = self.buffers[layer]
            cached_keys[:, :, kept:] = keys
            cached_values[:, :, kept:] = values
            return cached_keys, cached_values

        return decoder_pass(
            self.model, canvas, win, self.key_cols, _predicting(start, end, win.start), write_window
        )


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


def make_hidden_source(model: DiffusionLM, kv_cache: str) -> HiddenSource:
    """The hidden-state source for ``decoding.fast.kv_cache`` (``none`` | ``prefix`` | ``dual``)."""
    sources = {"none": FullForward, "prefix": PrefixCache, "dual": DualCache}
    if kv_cache not in sources:
        raise ValueError(f"decoding.fast.kv_cache={kv_cache!r}; expected one of {sorted(sources)}")
    return sources[kv_cache](model)
