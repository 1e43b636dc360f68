"""Token choice and confidences match Dream's sample_tokens on hand-computed distributions."""

from __future__ import annotations

import math

import pytest
import torch

from diffucoder.decoding.sampling import choose_tokens, model_probability, processed_probs

PROBS = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
LOGITS = PROBS.log()


def _dense(logits, temperature=0.0, top_p=None, top_k=None):
    """The processed distribution scattered back over the whole vocabulary."""
    probs, ids = processed_probs(logits, temperature, top_p, top_k)
    return probs if ids is None else torch.zeros_like(logits).scatter(-1, ids, probs)


def _sorted_reference(logits, temperature, top_p, top_k):
    """Dream's full-vocabulary recipe (sort, cumulative mass, mask, softmax): the oracle."""
    logits = logits / temperature if temperature > 0 else logits.clone()
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(-1, order, remove), float("-inf"))
    if top_k is not None:
        kth = torch.topk(logits, top_k).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits.softmax(-1)


def _choose(alg, temperature=0.0, top_p=None, top_k=None, logits=LOGITS, generator=None):
    return choose_tokens(
        logits, temperature=temperature, top_p=top_p, top_k=top_k, alg=alg, generator=generator
    )


def test_top_p_keeps_the_token_that_crosses_the_mass():
    kept = _dense(LOGITS, top_p=0.7)
    # 0.5 < 0.7, 0.5 + 0.3 = 0.8 crosses it: two tokens survive, renormalised
    assert torch.allclose(kept, torch.tensor([[0.625, 0.375, 0.0, 0.0]]), atol=1e-6)


def test_top_p_always_keeps_the_most_likely_token():
    assert torch.allclose(_dense(LOGITS, top_p=0.1), torch.tensor([[1.0, 0, 0, 0]]))


def test_top_k_keeps_k_tokens():
    kept = _dense(LOGITS, top_k=3)
    assert torch.allclose(kept, torch.tensor([[0.5, 0.3, 0.15, 0.0]]) / 0.95, atol=1e-6)


def test_temperature_sharpens_before_truncation():
    probs = _dense(LOGITS, temperature=0.5)
    squared = PROBS**2 / (PROBS**2).sum()
    assert torch.allclose(probs, squared, atol=1e-6)


def test_maskgit_plus_confidence_is_the_token_probability():
    choice = _choose("maskgit_plus")
    assert choice.tokens.tolist() == [0]
    assert choice.confidence.item() == pytest.approx(0.5)


def test_topk_margin_confidence_is_top1_minus_top2():
    assert _choose("topk_margin").confidence.item() == pytest.approx(0.2)


def test_entropy_confidence_is_negative_entropy():
    expected = sum(p * math.log(p) for p in PROBS[0].tolist())
    assert _choose("entropy").confidence.item() == pytest.approx(expected, abs=1e-6)


def test_confidences_are_read_from_the_truncated_distribution():
    # after top_p=0.7 the distribution is (0.625, 0.375): margin 0.25, not 0.2
    assert _choose("topk_margin", top_p=0.7).confidence.item() == pytest.approx(0.25)
    assert _choose("maskgit_plus", top_p=0.7).confidence.item() == pytest.approx(0.625)


@pytest.mark.parametrize(("temperature", "top_p"), [(0.2, 0.7), (0.2, None), (0.0, 0.7), (1.0, 0.95)])
def test_model_probability_is_the_raw_softmax_whatever_the_sampling(temperature, top_p):
    # what a confidence threshold tests: at T 0.2 the top token's processed probability is ~0.93
    # (0.5 ** 5 against 0.3 ** 5 ...), the model's own stays 0.5
    tokens = torch.tensor([0, 1, 2, 3])
    logits = LOGITS.expand(4, -1)
    assert torch.allclose(model_probability(logits, tokens), PROBS[0], atol=1e-6)
    choice = _choose(
        "maskgit_plus", temperature, top_p, logits=logits, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(model_probability(logits, choice.tokens), PROBS[0][choice.tokens], atol=1e-6)


def test_sampling_follows_the_distribution_and_the_generator():
    logits = LOGITS.expand(4000, -1)
    draws = _choose(
        "maskgit_plus", temperature=1.0, logits=logits, generator=torch.Generator().manual_seed(1)
    )
    freq = torch.bincount(draws.tokens, minlength=4).float() / 4000
    assert torch.allclose(freq, PROBS[0], atol=0.03)
    again = _choose(
        "maskgit_plus", temperature=1.0, logits=logits, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(draws.tokens, again.tokens)
    # the confidence is the probability of the *sampled* token
    assert torch.allclose(draws.confidence, PROBS[0][draws.tokens])


def test_truncated_tokens_are_never_sampled():
    logits = LOGITS.expand(2000, -1)
    draws = _choose(
        "maskgit_plus", temperature=1.0, top_k=2, logits=logits, generator=torch.Generator().manual_seed(0)
    )
    assert set(draws.tokens.tolist()) == {0, 1}


@pytest.mark.parametrize(
    ("temperature", "top_p", "top_k", "scale"),
    [
        (1.0, 0.95, None, 1.0),
        (0.7, 0.9, None, 8.0),
        (1.2, 0.95, 20, 3.0),
        (1.0, None, 5, 1.0),
        (0.0, 0.5, None, 2.0),
    ],
)
def test_candidate_truncation_matches_the_full_vocabulary_sort(temperature, top_p, top_k, scale):
    # flat rows (scale 1) put the nucleus far beyond the first 64 candidates, so the width must grow;
    # peaked rows (scale 8) keep it inside them
    logits = torch.randn(48, 4096, generator=torch.Generator().manual_seed(3)) * scale
    expected = _sorted_reference(logits, temperature, top_p, top_k)
    assert torch.allclose(_dense(logits, temperature, top_p, top_k), expected, atol=1e-6)
    for alg in ("entropy", "topk_margin", "maskgit_plus"):
        choice = _choose(alg, temperature, top_p, top_k, logits, torch.Generator().manual_seed(0))
        assert bool((expected.gather(-1, choice.tokens[:, None]) > 0).all())
        if alg == "maskgit_plus":
            assert torch.allclose(choice.confidence, expected.gather(-1, choice.tokens[:, None]).squeeze(-1))
    entropy = _choose("entropy", temperature, top_p, top_k, logits).confidence
    assert torch.allclose(entropy, (expected * torch.log(expected + 1e-10)).sum(-1), atol=1e-5)


@pytest.mark.parametrize("alg", ["entropy", "maskgit_plus", "topk_margin"])
def test_subnormal_probabilities_are_dropped_without_changing_a_choice(monkeypatch, alg):
    """At T 0.2 most of a peaked row's softmax is subnormal (slow on CPUs); the top-p path gives
    those tokens 0 instead, and samples the same tokens with the same confidences."""
    from diffucoder.decoding import sampling

    torch.manual_seed(0)
    logits = torch.randn(64, 4096) * 6
    logits[torch.arange(64), torch.randint(4096, (64,))] += torch.linspace(0, 40, 64)
    kwargs = dict(temperature=0.2, top_p=0.95, top_k=None, alg=alg)
    fast = choose_tokens(logits, generator=torch.Generator().manual_seed(3), **kwargs)
    monkeypatch.setattr(sampling, "_TOP_P_WITHOUT_UNDERFLOW", 0.0)  # the softmax of every logit
    exact_probs = (logits / 0.2).softmax(dim=-1)
    assert ((exact_probs > 0) & (exact_probs < torch.finfo(torch.float32).tiny)).any()  # not vacuous
    exact = choose_tokens(logits, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(fast.tokens, exact.tokens)
    assert torch.equal(fast.confidence, exact.confidence)
