"""End to end on a tiny fixed corpus: ELBO training teaches the model to fill masked tokens, and the
predictions land at the right positions only when read through ``logits_at_positions``.
"""

from __future__ import annotations

import pytest
import torch

from diffucoder.model import build_model
from diffucoder.model.shift import logits_at_positions
from diffucoder.train.objective import elbo_loss, forward_noise


def _fixed_corpus(tokenizer, text: str, n_seq: int, seq_len: int) -> torch.Tensor:
    ids = tokenizer(text)["input_ids"]
    return torch.tensor(ids[: n_seq * seq_len]).reshape(n_seq, seq_len)


def _train(model, data, mask_id, steps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    losses = []
    model.train()
    for _ in range(steps):
        nb = forward_noise(data, None, mask_id, generator=g)
        loss, _ = elbo_loss(model(nb.noisy_ids), data, nb.masked, nb.t)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def _fill_accuracy(model, data, mask_id) -> tuple[float, float]:
    """Mask 30% of positions; accuracy of (realigned, raw unshifted) argmax at the masked positions."""
    g = torch.Generator().manual_seed(123)
    masked = torch.rand(data.shape, generator=g) < 0.3
    masked[:, 0] = False
    noisy = data.masked_fill(masked, mask_id)
    model.eval()
    with torch.no_grad():
        logits = model(noisy)
    realigned = logits_at_positions(logits).argmax(-1)
    raw = logits.argmax(-1)
    return (realigned[masked] == data[masked]).float().mean().item(), (
        raw[masked] == data[masked]
    ).float().mean().item()


def _run(tokenizer, text, small_cfg, n_seq, seq_len, steps):
    data = _fixed_corpus(tokenizer, text, n_seq, seq_len)
    model = build_model(small_cfg, tokenizer)
    losses = _train(model, data, tokenizer.mask_token_id, steps)
    return losses, *_fill_accuracy(model, data, tokenizer.mask_token_id)


def test_training_reconstructs_masked_tokens_at_the_right_positions(tokenizer, corpus, small_cfg):
    losses, acc, unshifted_acc = _run(tokenizer, corpus[0], small_cfg, n_seq=8, seq_len=24, steps=400)
    assert sum(losses[-20:]) / 20 < 0.25 * sum(losses[:20]) / 20, losses[::20]
    assert acc > 0.9, (acc, unshifted_acc)
    assert unshifted_acc < 0.3, (acc, unshifted_acc)  # reading without the realignment is wrong


@pytest.mark.slow
def test_longer_training_on_more_data(tokenizer, corpus, small_cfg):
    cfg = small_cfg.model_copy(update={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 3})
    losses, acc, unshifted_acc = _run(tokenizer, corpus[0], cfg, n_seq=16, seq_len=64, steps=1000)
    assert acc > 0.9, (acc, unshifted_acc)
    assert unshifted_acc < 0.3, (acc, unshifted_acc)
