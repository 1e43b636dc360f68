"""Log-prob estimators: complementary masks, seeds, prompt handling, and unbiasedness against Monte Carlo."""

from __future__ import annotations

import pytest
import torch

from diffucoder.decoding.layout import make_canvas
from diffucoder.model.shift import logits_at_positions
from diffucoder.rl.estimators import build_copies, combine_scores, estimate_logps, token_logps

MASK = 3


def _seqs(batch=3, prompt=4, gen=10):
    g = torch.Generator().manual_seed(1)
    return torch.randint(10, 100, (batch, prompt + gen), generator=g), prompt


def _copies(seqs, p, valid, estimator, seed, **options):
    """build_copies with the test's mask id and a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return build_copies(
        seqs, p, valid, mask_token_id=MASK, estimator=estimator, generator=generator, **options
    )


def test_coupled_pair_is_complementary_and_prompt_untouched():
    seqs, p = _seqs()
    valid = torch.ones(seqs.shape[0], p, dtype=torch.bool)
    for seed in range(20):
        c = _copies(seqs, p, valid, "coupled", seed)
        assert c.ids.shape[0] == 3
        assert c.masked[0].all()  # the full-mask pass
        assert (c.masked[1] ^ c.masked[2]).all()  # every completion token masked exactly once per pair
        t = 1 / float(c.weights[1])
        assert 0.2 <= t <= 0.8
        assert float(c.weights[2]) == pytest.approx(1 / (1 - t))
        assert torch.equal(c.ids[:, :, :p], seqs[:, :p].expand(3, -1, -1))  # prompt never masked
        assert torch.equal(c.ids[:, :, p:] == MASK, c.masked)


def test_same_seed_same_masks_and_no_global_rng_use():
    seqs, p = _seqs()
    valid = torch.ones(seqs.shape[0], p, dtype=torch.bool)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = _copies(seqs, p, valid, "coupled", 7)
    b = _copies(seqs, p, valid, "coupled", 7)
    c = _copies(seqs, p, valid, "coupled", 8)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.weights, b.weights)
    assert not torch.equal(a.ids, c.ids)
    assert torch.equal(torch.get_rng_state(), before)


def test_decoupled_and_full_mask_shapes():
    seqs, p = _seqs()
    valid = torch.ones(seqs.shape[0], p, dtype=torch.bool)
    valid[0, :2] = False  # left padding is never masked, even with prompt masking
    d = _copies(seqs, p, valid, "decoupled", 0, pairs=2)
    assert d.ids.shape[0] == 5 and not (d.masked[1] ^ d.masked[2]).all()
    f = _copies(seqs, p, valid, "full_mask", 0, p_mask_prompt=0.5)
    assert f.ids.shape[0] == 1 and f.masked.all()
    prompt_masked = f.ids[0, :, :p] == MASK
    assert prompt_masked.any() and not prompt_masked[0, :2].any()
    with pytest.raises(ValueError, match="estimator"):
        _copies(seqs, p, valid, "bogus", 0)


def test_combine_matches_eq13_by_hand():
    seqs, p = _seqs(batch=1, gen=6)
    valid = torch.ones(1, p, dtype=torch.bool)
    c = _copies(seqs, p, valid, "coupled", 3)
    logps = -torch.rand(3, 1, 6)
    t = 1 / float(c.weights[1])
    expect = torch.empty(1, 6)
    for k in range(6):
        partial = logps[1, 0, k] / t if c.masked[1, 0, k] else logps[2, 0, k] / (1 - t)
        expect[0, k] = 0.5 * (logps[0, 0, k] + partial)
    assert torch.allclose(combine_scores(logps, c), expect)


def test_left_padded_rows_score_like_unpadded(small_model, tokenizer):
    """The log-prob pass uses the rollout layout: a padded row scores as it does alone."""
    ids = torch.tensor(tokenizer("def f(x):\n    return x + 1\n")["input_ids"])
    p, gen = 5, ids.numel() - 5
    alone = ids[None]
    padded = torch.cat([torch.full((1, 3), tokenizer.pad_token_id), alone], dim=1)
    valid_alone = torch.ones(1, p, dtype=torch.bool)
    valid_pad = torch.cat([torch.zeros(1, 3, dtype=torch.bool), valid_alone], dim=1)
    with torch.no_grad():
        a = token_logps(small_model, alone, alone, p, valid_alone)
        b = token_logps(small_model, padded, padded, p + 3, valid_pad)
    assert a.shape == (1, gen)
    assert torch.allclose(a, b, atol=1e-5)


def _mc_reference(model, seqs, p, valid, n, seed, chunk=100):
    """0.5 * log p_full + E[M * log p(x_t) / t], t ~ U[0.2, 0.8] and M ~ Bernoulli(t) drawn per row: n draws."""
    g = torch.Generator().manual_seed(seed)
    full = estimate_logps(
        model, seqs, p, valid, mask_token_id=model.mask_token_id, estimator="full_mask", generator=g
    )
    total = torch.zeros_like(full)
    for _ in range(n // chunk):
        rows = seqs.repeat(chunk, 1)
        t = 0.2 + 0.6 * torch.rand(chunk, 1, generator=g)
        m = torch.rand(chunk, rows.shape[1] - p, generator=g) < t
        noisy = rows.clone()
        noisy[:, p:] = noisy[:, p:].masked_fill(m, model.mask_token_id)
        total += (m * token_logps(model, noisy, rows, p, valid.repeat(chunk, 1)) / t).sum(0, keepdim=True)
    return 0.5 * full + total / n


@pytest.fixture(scope="module")
def scored(small_model, tokenizer):
    ids = torch.tensor(tokenizer("def add(a, b):\n    return a + b\n")["input_ids"])[None]
    p = 3
    valid = torch.ones(1, p, dtype=torch.bool)
    with torch.no_grad():
        reference = _mc_reference(small_model, ids, p, valid, n=1000, seed=99)
    return ids, p, valid, reference


@pytest.mark.parametrize("estimator", ["coupled", "decoupled"])
def test_estimators_agree_with_monte_carlo_reference(small_model, scored, estimator):
    """Averaged over many mask seeds, each estimator converges to the same expectation as plain MC.

    Each call scores 25 copies of the sequence (one t per call, as in training); the standard error
    comes from the spread of the 16 call means, so the shared t is accounted for.
    """
    ids, p, valid, reference = scored
    with torch.no_grad():
        means = torch.stack(
            [
                estimate_logps(
                    small_model,
                    ids.repeat(25, 1),
                    p,
                    valid.repeat(25, 1),
                    mask_token_id=small_model.mask_token_id,
                    estimator=estimator,
                    generator=torch.Generator().manual_seed(s),
                ).mean(0)
                for s in range(16)
            ]
        )
    mean, sem = means.mean(0), means.std(0) / means.shape[0] ** 0.5
    err = (mean - reference[0]).abs()
    # the reference has its own MC error (1000 draws): allow 4 standard errors plus a small slack
    assert (err <= 4 * sem + 0.03 * reference[0].abs() + 0.05).all(), (mean, reference, sem)
    full = estimate_logps(
        small_model,
        ids,
        p,
        valid,
        mask_token_id=small_model.mask_token_id,
        estimator="full_mask",
        generator=torch.Generator(),
    )
    assert not torch.allclose(mean, full[0], atol=1e-3)  # not trivially the full-mask score


def test_coupled_has_lower_variance_than_decoupled(small_model, scored):
    """The antithetic pair (App. A.4): same passes, smaller spread across mask seeds."""
    ids, p, valid, _ = scored
    with torch.no_grad():
        var = {
            name: torch.stack(
                [
                    estimate_logps(
                        small_model,
                        ids,
                        p,
                        valid,
                        mask_token_id=small_model.mask_token_id,
                        estimator=name,
                        generator=torch.Generator().manual_seed(s),
                    )[0]
                    for s in range(200)
                ]
            )
            .var(0)
            .mean()
            for name in ("coupled", "decoupled")
        }
    assert var["coupled"] < var["decoupled"]


def test_token_logps_match_the_full_head(small_model):
    # the LM head runs at completion positions only; the scores equal those of the full (B, T, V) head
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(5, small_model.config.vocab_size, (3, 20), generator=gen)
    valid = torch.ones(3, 8, dtype=torch.bool)
    valid[1, :3] = False  # a left-padded prompt
    noisy = rows.clone()
    noisy[:, 12:16] = small_model.mask_token_id
    with torch.no_grad():
        got = token_logps(small_model, noisy, rows, 8, valid)
        canvas = make_canvas(noisy[:, :8], valid.long(), 12, 0)
        full = small_model(
            noisy, attention_mask=canvas.allowed(slice(None), slice(None)), position_ids=canvas.position_ids
        )
        logp = logits_at_positions(full)[:, 8:].float().log_softmax(-1)
        expected = logp.gather(-1, rows[:, 8:, None]).squeeze(-1)
    assert got.shape == (3, 12) and torch.allclose(got, expected, atol=1e-5)
