"""ELBO loss and forward noising: the shift, the 1/t weighting, the normalisation, the masking."""

from __future__ import annotations

import math

import pytest
import torch

from diffucoder.train.objective import (
    elbo_loss,
    forward_noise,
    random_prefix_condition,
    random_truncation,
)

V = 11
MASK = 10


def _peaked_logits(ids: torch.Tensor, shift: int) -> torch.Tensor:
    """(B, T, V) logits whose position i puts all mass on ids[i + shift] (0 where out of range)."""
    b, t = ids.shape
    logits = torch.full((b, t, V), -30.0)
    for i in range(t):
        j = min(i + shift, t - 1)
        logits[torch.arange(b), i, ids[:, j]] = 30.0
    return logits


def test_shift_is_ar_logits_i_predict_token_i_plus_1():
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[:, 1:] = True
    t = torch.tensor([0.5, 0.5])
    right, _ = elbo_loss(_peaked_logits(ids, shift=1), ids, masked, t)
    llada, _ = elbo_loss(_peaked_logits(ids, shift=0), ids, masked, t)  # no-shift convention
    assert right.item() < 1e-6
    assert llada.item() > 50.0


def test_loss_value_by_hand():
    """Uniform logits: CE = log V per masked target; loss = sum(log V / t_b) / n_masked."""
    ids = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
    masked = torch.tensor([[False, True, False, True], [False, True, True, True]])
    t = torch.tensor([0.25, 0.5])
    logits = torch.zeros(2, 4, V, requires_grad=True)
    loss, stats = elbo_loss(logits, ids, masked, t)
    expected = (2 * math.log(V) / 0.25 + 3 * math.log(V) / 0.5) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["masked_tokens"] == 5.0
    assert stats["ce"] == pytest.approx(math.log(V), rel=1e-6)
    assert stats["mask_ratio"] == pytest.approx(5 / 6)
    loss.backward()
    # gradients only reach logits that predict a masked target (positions i with masked[i + 1])
    touched = logits.grad.abs().sum(-1) > 0
    assert torch.equal(touched, torch.tensor([[True, False, True, False], [True, True, True, False]]))


def test_mask_at_position_zero_is_ignored():
    ids = torch.tensor([[1, 2, 3]])
    masked = torch.tensor([[True, False, False]])
    loss, stats = elbo_loss(torch.zeros(1, 3, V, requires_grad=True), ids, masked, torch.tensor([0.5]))
    assert loss.item() == 0.0 and stats["masked_tokens"] == 0.0
    loss.backward()  # still carries a graph


def test_elbo_rejects_mismatched_shapes():
    ids = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="do not match"):
        elbo_loss(torch.zeros(2, 5, V), ids, ids.bool(), torch.ones(2))
    with pytest.raises(ValueError, match="do not match"):
        elbo_loss(torch.zeros(2, 4, V), ids, ids.bool(), torch.ones(3))


def test_forward_noise_masks_with_rate_t_and_never_position_zero():
    ids = torch.randint(0, MASK, (64, 512), generator=torch.Generator().manual_seed(0))
    nb = forward_noise(ids, None, MASK, eps=1e-3, generator=torch.Generator().manual_seed(1))
    assert nb.noisy_ids.shape == ids.shape and nb.t.shape == (64,)
    assert ((nb.t >= 1e-3) & (nb.t <= 1.0)).all()
    assert not nb.masked[:, 0].any()
    assert torch.equal(nb.noisy_ids[nb.masked], torch.full((int(nb.masked.sum()),), MASK))
    assert torch.equal(nb.noisy_ids[~nb.masked], ids[~nb.masked])
    rate = nb.masked[:, 1:].float().mean(1)
    assert (rate - nb.t).abs().max() < 0.1  # binomial(511, t) stays within a few std of t
    assert nb.t.std() > 0.15  # one t per sequence, spread over (0, 1]


def test_forward_noise_respects_maskable_and_generator():
    ids = torch.randint(0, MASK, (4, 32), generator=torch.Generator().manual_seed(0))
    maskable = torch.zeros(4, 32, dtype=torch.bool)
    maskable[:, 20:] = True
    a = forward_noise(ids, maskable, MASK, generator=torch.Generator().manual_seed(7))
    b = forward_noise(ids, maskable, MASK, generator=torch.Generator().manual_seed(7))
    assert not a.masked[:, :20].any()
    assert torch.equal(a.masked, b.masked) and torch.equal(a.t, b.t)
    with pytest.raises(ValueError, match="maskable shape"):
        forward_noise(ids, maskable[:, :5], MASK)


def test_random_truncation():
    ids = torch.arange(40).reshape(4, 10)
    same, keep = random_truncation(ids, prob=0.0, pad_token_id=99)
    assert torch.equal(same, ids) and keep.all()
    cut, keep = random_truncation(ids, prob=1.0, pad_token_id=99, generator=torch.Generator().manual_seed(0))
    lengths = keep.sum(1)
    assert ((lengths >= 2) & (lengths <= 10)).all()
    assert torch.equal(keep, torch.arange(10)[None] < lengths[:, None])  # a prefix is kept
    assert torch.equal(cut[keep], ids[keep]) and (cut[~keep] == 99).all()


def test_random_prefix_condition():
    maskable = torch.ones(4, 10, dtype=torch.bool)
    assert torch.equal(random_prefix_condition(maskable, prob=0.0), maskable)
    cond = random_prefix_condition(maskable, prob=1.0, generator=torch.Generator().manual_seed(0))
    prefix = (~cond).sum(1)
    assert ((prefix >= 1) & (prefix <= 9)).all()
    assert torch.equal(~cond, torch.arange(10)[None] < prefix[:, None])
