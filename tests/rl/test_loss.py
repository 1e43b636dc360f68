"""The GRPO objective, advantages and k3 KL against hand computations on toy batches."""

from __future__ import annotations

import math

import pytest
import torch

from diffucoder.rl.advantages import group_advantages, rows_to_keep, varied_groups, zero_std_fraction
from diffucoder.rl.loss import grpo_loss, kl_k3, masked_mean


def test_loo_and_mean_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    mean = group_advantages(r, 4, "mean")
    assert torch.allclose(mean[:4], torch.tensor([0.0, -1.0, 1.0, 0.0]))
    loo = group_advantages(r, 4, "loo")
    # r_i - mean of the other three
    assert torch.allclose(loo[:4], torch.tensor([1 - 3 / 3, 0 - 4 / 3, 2 - 2 / 3, 1 - 3 / 3]))
    assert torch.allclose(loo[:4], mean[:4] * 4 / 3)  # G/(G-1) times the mean baseline
    assert torch.equal(mean[4:], torch.zeros(4)) and torch.equal(loo[4:], torch.zeros(4))
    scaled = group_advantages(r, 4, "mean", scale=True)
    std = torch.tensor([1.0, 0.0, 2.0, 1.0]).std()
    assert torch.allclose(scaled[:4], mean[:4] / (std + 1e-4))
    assert zero_std_fraction(r, 4) == 0.5
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(r, 3)


def test_dynamic_sampling_keeps_groups_with_variance_first_in_draw_order():
    # four groups of 2: flat, varied, flat, varied
    r = torch.tensor([1.0, 1.0, 0.0, 2.0, 0.5, 0.5, 2.0, 0.0])
    assert varied_groups(r, 2) == [1, 3]
    assert rows_to_keep(r, 2, 2) == [2, 3, 6, 7]
    assert rows_to_keep(r, 2, 3) == [0, 1, 2, 3, 6, 7]  # filled with the first flat group
    assert rows_to_keep(r, 2, 1) == [2, 3]


def test_k3_formula():
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.5, -2.0, -0.1])
    expect = [math.exp(r - p) - (r - p) - 1 for p, r in zip(logp.tolist(), ref.tolist(), strict=True)]
    assert torch.allclose(kl_k3(logp, ref), torch.tensor(expect))
    assert kl_k3(logp, logp).abs().max() == 0
    assert (kl_k3(logp, ref) >= 0).all()


def test_masked_mean_normalisations():
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    assert masked_mean(v, m, "token") == pytest.approx(10 / 4)
    assert masked_mean(v, m, "sequence") == pytest.approx((2 + 4) / 2)


@pytest.mark.parametrize("normalization", ["token", "sequence"])
def test_loss_and_gradient_match_hand_computation(normalization):
    """Two rollouts, three tokens: one clipped high, one clipped low, the rest inside the range."""
    logp = torch.tensor([[-1.0, -0.2, -2.0], [-0.5, -3.0, -1.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -1.0, -1.9], [-0.5, -1.5, -1.0]])
    ref = torch.tensor([[-1.2, -0.4, -2.0], [-0.7, -3.0, -1.1]])
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    eps_lo, eps_hi, beta = 0.2, 0.3, 0.1
    loss, stats = grpo_loss(
        logp,
        old,
        ref,
        adv,
        mask,
        epsilon_low=eps_lo,
        epsilon_high=eps_hi,
        beta=beta,
        normalization=normalization,
    )

    per_tok, grads = [], []
    for i in range(2):
        row_terms, row_grads = [], []
        for k in range(3):
            lp, o, r, a = logp[i, k].item(), old[i, k].item(), ref[i, k].item(), adv[i].item()
            ratio = math.exp(lp - o)
            clipped_ratio = min(max(ratio, 1 - eps_lo), 1 + eps_hi)
            surr = min(ratio * a, clipped_ratio * a)
            kl = math.exp(r - lp) - (r - lp) - 1
            row_terms.append(-surr + beta * kl)
            # d/dlp: the surrogate passes gradient only when the unclipped branch is the min
            d_surr = ratio * a if ratio * a <= clipped_ratio * a else 0.0
            d_kl = -math.exp(r - lp) + 1
            row_grads.append(-d_surr + beta * d_kl)
        per_tok.append(row_terms)
        grads.append(row_grads)
    m = mask.float()
    weights = m / m.sum() if normalization == "token" else m / m.sum(dim=1, keepdim=True) / 2
    expect_loss = (torch.tensor(per_tok) * weights).sum()
    loss.backward()
    assert loss.item() == pytest.approx(expect_loss.item(), rel=1e-5)
    assert torch.allclose(logp.grad, torch.tensor(grads) * weights, atol=1e-6)
    # token (0,1): ratio e^0.8 > 1.3 with A > 0 -> clipped high; token (1,1): ratio e^-1.5 < 0.8 with A < 0 -> low
    assert stats.clip_frac_high == pytest.approx(1 / 5) and stats.clip_frac_low == pytest.approx(1 / 5)
    assert logp.grad[0, 1] == pytest.approx(
        beta * (1 - math.exp(ref[0, 1].item() + 0.2)) * weights[0, 1].item()
    )


def test_ratio_one_gives_advantage_weighted_gradient():
    """With old = policy (mu = 1) and beta = 0, d loss / d logp = -A / |tokens| (the REINFORCE direction)."""
    logp = torch.zeros(2, 4, requires_grad=True)
    adv = torch.tensor([0.5, -1.0])
    ones = torch.ones(2, 4, dtype=torch.bool)
    loss, stats = grpo_loss(logp, logp.detach(), None, adv, ones, epsilon_low=0.5, epsilon_high=0.5, beta=0.0)
    loss.backward()
    assert torch.allclose(logp.grad, -adv[:, None].expand(2, 4) / 8)
    assert stats.clip_frac == 0 and stats.kl == 0
    with pytest.raises(ValueError, match="reference"):
        grpo_loss(logp, logp.detach(), None, adv, ones, epsilon_low=0.5, epsilon_high=0.5, beta=0.1)
