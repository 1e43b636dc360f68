"""The block KV caches: exact where they should be, and their K/V buffers reused correctly.

Right after a refresh nothing has changed, so a cached step must reproduce the full forward's
logits for the block: this checks the window offset (AR shift), the key order inside the cache,
the position ids and the 4-D padding mask all at once. After a token changes inside the block the
caches are approximate by design (Fast-dLLM, arXiv 2505.22618); the cached step must then still see the new
token (its logits move), unlike a stale replay.
"""

from __future__ import annotations

import pytest
import torch

from diffucoder.decoding.forward import DualCache, FullForward, PrefixCache, block_logits
from diffucoder.decoding.layout import make_canvas
from diffucoder.model import build_model
from diffucoder.model.shift import logits_at_positions


def logits(model, source, canvas, start, end, refresh):
    """A source's block hidden states through the LM head, as the sampler reads them."""
    return block_logits(model, source(canvas, start, end, refresh=refresh))


@pytest.fixture
def canvas(padded_batch, model):
    ids, mask = padded_batch
    canvas = make_canvas(ids, mask, 16, model.mask_token_id)
    # fill the first block with real tokens so the canvas is not all masks
    canvas.x[:, ids.shape[1] : ids.shape[1] + 4] = ids[:, -4:]
    return canvas


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "same-length"])
@torch.no_grad()
def test_block_logits_equal_the_plain_full_forward(model, canvas, padded):
    """The sampler's fast route (key-padding mask, LM head on the block only) reproduces the plain
    forward with the per-query 4-D mask and every column's logits, realigned for the AR shift."""
    if not padded:  # GRPO's case: G copies of one prompt, no padding, so no mask at all
        canvas = make_canvas(canvas.x[1:2, : canvas.prompt_len].repeat(3, 1), None, 16, model.mask_token_id)
        assert canvas.key_mask() is None
    start, end = canvas.prompt_len + 4, canvas.prompt_len + 12
    mask = canvas.allowed(slice(None), slice(None)) if padded else None
    plain = model(canvas.x, attention_mask=mask, position_ids=canvas.position_ids)
    expected = logits_at_positions(plain)[:, start:end]
    torch.testing.assert_close(logits(model, FullForward(model), canvas, start, end, False), expected)


@pytest.mark.parametrize("source_cls", [PrefixCache, DualCache])
@pytest.mark.parametrize("block", [(4, 8), (0, 16), (12, 16)], ids=["middle", "whole", "last"])
@torch.no_grad()
def test_cached_step_equals_full_forward_until_the_canvas_changes(model, canvas, source_cls, block):
    start, end = canvas.prompt_len + block[0], canvas.prompt_len + block[1]
    full = logits(model, FullForward(model), canvas, start, end, True)
    source = source_cls(model)
    refreshed = logits(model, source, canvas, start, end, True)
    cached = logits(model, source, canvas, start, end, False)
    assert full.shape == cached.shape == (3, end - start, model.hf.config.vocab_size)
    torch.testing.assert_close(refreshed, full, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("source_cls", [PrefixCache, DualCache])
@torch.no_grad()
def test_cached_step_sees_tokens_committed_in_the_block(model, canvas, source_cls):
    start, end = canvas.prompt_len + 4, canvas.prompt_len + 8
    source = source_cls(model)
    before = logits(model, source, canvas, start, end, True)
    canvas.x[:, start] = canvas.x[:, 0]  # commit a token at the block's first position
    after_cached = logits(model, source, canvas, start, end, False)
    after_full = logits(model, FullForward(model), canvas, start, end, True)
    # the position right after the changed one reads it directly (hidden state start predicts start + 1)
    assert not torch.allclose(after_cached[:, 1], before[:, 1], atol=1e-4)
    # with only the block changed, the prefix cache's stale K/V are those left of the block: for the
    # block's own predictions it stays close to the full forward
    assert (after_cached - after_full).abs().max() < (before - after_full).abs().max()


@torch.no_grad()
def test_windows_do_not_accumulate_in_the_cache(model, canvas):
    """Each step writes its window into the same room after the kept columns: the buffers keep
    their size, and the kept columns' K/V stay those of the refresh."""
    source = DualCache(model)
    start, end = canvas.prompt_len + 4, canvas.prompt_len + 8
    source(canvas, start, end, refresh=True)
    window = end - start + 1
    cached = len(source.cached_cols)
    assert cached == canvas.x.shape[1] - window
    kept = [k[:, :, :cached].clone() for k, _ in source.buffers]
    shapes = [k.shape for k, _ in source.buffers]
    for _ in range(3):
        canvas.x[:, start] = (canvas.x[:, start] + 1) % model.hf.config.vocab_size  # the window changes
        source(canvas, start, end, refresh=False)
    assert [k.shape for k, _ in source.buffers] == shapes
    assert shapes[0][2] == cached + window
    for (k, _), before in zip(source.buffers, kept, strict=True):
        torch.testing.assert_close(k[:, :, :cached], before, rtol=0, atol=0)


@torch.no_grad()
def test_caches_work_with_eager_attention(tokenizer, small_model_cfg, padded_batch):
    """Eager attention adds the mask to the scores, so the cache path must hand it an additive mask."""
    torch.manual_seed(1)
    eager = build_model(small_model_cfg.model_copy(update={"attn_implementation": "eager"}), tokenizer).eval()
    ids, mask = padded_batch
    canvas = make_canvas(ids, mask, 8, eager.mask_token_id)
    start, end = canvas.prompt_len, canvas.prompt_len + 4
    full = logits(eager, FullForward(eager), canvas, start, end, True)
    source = DualCache(eager)
    source(canvas, start, end, refresh=True)
    cached = logits(eager, source, canvas, start, end, False)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("source_cls", [FullForward, PrefixCache, DualCache])
@torch.no_grad()
def test_a_source_runs_only_the_rows_asked_for(model, canvas, source_cls):
    """Rows that leave a block (no masks left) leave the forward: the remaining rows' hidden states
    are those of the whole batch, and a cache keeps only their K/V from then on."""
    start, end = canvas.prompt_len + 4, canvas.prompt_len + 8
    whole, part = source_cls(model), source_cls(model)
    whole(canvas, start, end, refresh=True)
    part(canvas, start, end, refresh=True)
    canvas.x[:, start] = canvas.x[:, 0]  # a commit, so the cached step differs from the refresh
    expected = whole(canvas, start, end, refresh=False)
    for rows in ([0, 2], [2]):
        hidden = part(canvas, start, end, refresh=False, rows=torch.tensor(rows))
        torch.testing.assert_close(hidden, expected[rows])
        if source_cls is not FullForward:
            assert [k.shape[0] for k, _ in part.buffers] == [len(rows)] * len(part.buffers)
    if source_cls is not FullForward:
        with pytest.raises(ValueError, match="not a subset"):
            part(canvas, start, end, refresh=False, rows=torch.tensor([1, 2]))
