"""diffusion_generate: Dream semantics on a real (untrained) Qwen2 diffusion LM.

The properties here must hold for any weights: the schedule is followed step by step, nothing is
re-masked, no mask is left, greedy decoding is deterministic and batch-independent, and the fast
sampler reduces to the plain one when its threshold admits nothing extra.
"""

from __future__ import annotations

import pytest
import torch

from diffucoder.decoding import DecodingConfig, diffusion_generate, sampler, unmask_schedule
from diffucoder.decoding.layout import make_canvas
from diffucoder.decoding.sampling import processed_probs

GREEDY = dict(temperature=0.0, top_p=None, alg="maskgit_plus")


def _one(prompt: list[int]) -> torch.Tensor:
    return torch.tensor([prompt])


def _run(model, ids, mask, trace=True, generator=None, **cfg):
    return diffusion_generate(
        model, ids, mask, DecodingConfig(**cfg), generator=generator, return_trace=trace
    )


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
def test_trace_follows_the_floor_schedule(model, prompts, alg):
    out = _run(model, _one(prompts[0]), None, max_new_tokens=24, steps=12, temperature=0.0, alg=alg)
    per_step = torch.bincount(out.trace[0], minlength=12).tolist()
    assert per_step == unmask_schedule(24, 12)
    assert out.forward_passes == 12


def test_output_keeps_the_prompt_and_has_no_mask(model, prompts, padded_batch):
    ids, mask = padded_batch
    out = _run(
        model,
        ids,
        mask,
        max_new_tokens=16,
        steps=16,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(out.sequences[:, : ids.shape[1]], ids)
    assert out.sequences.shape == (3, ids.shape[1] + 16)
    assert not (out.sequences == model.mask_token_id).any()
    assert (out.trace >= 0).all()


def test_mask_token_is_never_predicted(model, prompts):
    """Even when the model's favourite token is the mask itself (Dream would write it and leave it)."""
    with torch.no_grad():
        model.hf.lm_head.weight[model.mask_token_id] += 100.0
    try:
        out = _run(model, _one(prompts[0]), None, max_new_tokens=8, steps=8, **GREEDY)
    finally:
        with torch.no_grad():
            model.hf.lm_head.weight[model.mask_token_id] -= 100.0
    assert not (out.sequences == model.mask_token_id).any()


def test_no_token_is_ever_remasked_or_changed(model, prompts):
    """Record the canvas the model sees at every step: a committed token stays as it was."""
    seen = []
    # the sampler runs the HF model's layers itself; every step starts at the token embedding
    hook = model.hf.get_input_embeddings().register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].clone())
    )
    try:
        out = _run(
            model,
            _one(prompts[1]),
            None,
            max_new_tokens=16,
            steps=8,
            temperature=1.0,
            generator=torch.Generator().manual_seed(3),
        )
    finally:
        hook.remove()
    final = out.sequences
    assert len(seen) == 8
    for before, after in zip(seen, seen[1:] + [final], strict=True):
        committed = before != model.mask_token_id
        assert torch.equal(after[committed], before[committed])
        assert (after != model.mask_token_id).sum() >= committed.sum()


def test_greedy_is_deterministic(model, prompts):
    a = _run(model, _one(prompts[1]), None, max_new_tokens=16, steps=16, **GREEDY)
    b = _run(model, _one(prompts[1]), None, max_new_tokens=16, steps=16, **GREEDY)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.trace, b.trace)


@pytest.mark.parametrize(
    "fast",
    [
        None,
        dict(enabled=True, threshold=0.02, block_length=8, kv_cache="dual"),
        dict(enabled=True, kv_cache="prefix", block_length=8),
    ],
    ids=["plain", "threshold+dual", "prefix"],
)
def test_greedy_alone_equals_inside_a_left_padded_batch(model, prompts, padded_batch, fast):
    cfg = dict(max_new_tokens=16, steps=16, **GREEDY, **({"fast": fast} if fast else {}))
    ids, mask = padded_batch
    batch = _run(model, ids, mask, **cfg)
    for row, prompt in enumerate(prompts):
        alone = _run(model, _one(prompt), None, **cfg)
        assert torch.equal(batch.sequences[row, -16:], alone.sequences[0, -16:]), row
        assert torch.equal(batch.trace[row], alone.trace[0]), row


@pytest.mark.parametrize("kv_cache", ["dual", "prefix", "none"])
def test_finished_rows_leave_the_forward_and_change_no_token(model, padded_batch, monkeypatch, kv_cache):
    """With a threshold the rows of a batch finish a block after different numbers of steps; the
    forward then runs only the rows with masks left, and decodes what forwarding every row does.
    (tau 0.004: the untrained model's top token is near 1/V, so some rows pass it and some not.)"""
    ids, mask = padded_batch
    cfg = dict(
        max_new_tokens=16, steps=16, **GREEDY,
        fast=dict(enabled=True, threshold=0.004, block_length=8, kv_cache=kv_cache),
    )  # fmt: skip
    real = sampler.make_hidden_source
    forwarded = []

    def counting(model, kv_cache):
        source = real(model, kv_cache)

        def run(canvas, start, end, refresh, rows):
            forwarded.append(len(rows))
            return source(canvas, start, end, refresh, rows)

        return run

    def every_row(model, kv_cache):
        source = real(model, kv_cache)
        return lambda canvas, start, end, refresh, rows: source(canvas, start, end, refresh)[rows]

    monkeypatch.setattr(sampler, "make_hidden_source", counting)
    fewer_rows = _run(model, ids, mask, **cfg)
    monkeypatch.setattr(sampler, "make_hidden_source", every_row)
    all_rows = _run(model, ids, mask, **cfg)
    assert min(forwarded) < ids.shape[0]  # some step left a finished row out
    assert torch.equal(fewer_rows.sequences, all_rows.sequences)
    assert torch.equal(fewer_rows.trace, all_rows.trace)


def test_generator_makes_sampling_reproducible(model, prompts):
    kwargs = dict(max_new_tokens=16, steps=8, temperature=1.0, alg="entropy", alg_temp=0.5)
    a = _run(model, _one(prompts[0]), None, generator=torch.Generator().manual_seed(7), **kwargs)
    b = _run(model, _one(prompts[0]), None, generator=torch.Generator().manual_seed(7), **kwargs)
    c = _run(model, _one(prompts[0]), None, generator=torch.Generator().manual_seed(8), **kwargs)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.trace, b.trace)
    assert not torch.equal(a.sequences, c.sequences)


def test_origin_unmasks_everything_by_the_last_step(model, prompts):
    out = _run(
        model,
        _one(prompts[0]),
        None,
        max_new_tokens=16,
        steps=4,
        alg="origin",
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert not (out.sequences == model.mask_token_id).any()
    assert out.trace.max() <= 3


@pytest.mark.parametrize("steps", [8, 4])
@pytest.mark.parametrize("alg", ["maskgit_plus", "entropy"])
def test_threshold_one_without_cache_equals_the_plain_sampler(model, prompts, padded_batch, steps, alg):
    """tau = 1.0 admits nothing beyond the schedule, so the fast sampler is the plain one.

    steps <= L / 2 because the plain schedule at steps = L unmasks nothing at step 0, while
    threshold decoding always commits at least one token per step.
    """
    ids, mask = padded_batch
    plain = _run(model, ids, mask, max_new_tokens=16, steps=steps, temperature=0.0, alg=alg)
    fast = _run(
        model,
        ids,
        mask,
        max_new_tokens=16,
        steps=steps,
        temperature=0.0,
        alg=alg,
        fast=dict(enabled=True, threshold=1.0, block_length=None, kv_cache="none"),
    )
    assert torch.equal(plain.sequences, fast.sequences)
    assert torch.equal(plain.trace, fast.trace)


def test_low_threshold_commits_whole_blocks_at_once(model, prompts):
    """Every greedy pick has probability >= 1/V > tau, so each block takes one forward."""
    out = _run(
        model,
        _one(prompts[0]),
        None,
        max_new_tokens=16,
        steps=16,
        **GREEDY,
        fast=dict(enabled=True, threshold=1e-4, block_length=4, kv_cache="none"),
    )
    assert out.forward_passes == 4
    assert out.trace[0].tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4


def test_threshold_tests_the_model_probability_not_the_tempered_one(model, prompts):
    """At a low temperature every sampled token's tempered probability is near 1, while the
    untrained model gives each token far less than tau: nothing may pass tau beyond the schedule,
    so tau 0.5 decodes exactly as tau 1.0 does (same tokens, same steps)."""
    ids = _one(prompts[0])
    temperature = 0.005
    with torch.no_grad():
        logits = model(torch.cat([ids, torch.full((1, 16), model.mask_token_id)], dim=1))[0, -17:-1]
    # the premise: the model is never that sure, the tempered distribution always is
    assert logits.softmax(-1).amax() < 0.5
    assert processed_probs(logits, temperature, 0.95, None).probs.amax(-1).min() > 0.9

    def decode(threshold):
        return _run(
            model,
            ids,
            None,
            max_new_tokens=16,
            steps=16,
            temperature=temperature,
            alg="maskgit_plus",
            generator=torch.Generator().manual_seed(0),
            fast=dict(enabled=True, threshold=threshold, block_length=None, kv_cache="none"),
        )

    loose, strict = decode(0.5), decode(1.0)
    assert loose.forward_passes == strict.forward_passes == 16
    assert torch.equal(loose.sequences, strict.sequences)


def test_blocks_are_decoded_left_to_right(model, prompts):
    out = _run(
        model,
        _one(prompts[1]),
        None,
        max_new_tokens=16,
        steps=16,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
        fast=dict(enabled=True, threshold=None, block_length=4),
    )
    blocks = out.trace[0].reshape(4, 4)
    assert (blocks[:-1].amax(dim=1) < blocks[1:].amin(dim=1)).all()
    assert out.forward_passes == 16


def test_prompt_with_a_mask_token_is_rejected(model, prompts):
    with pytest.raises(ValueError, match="mask token"):
        _run(model, _one(prompts[0] + [model.mask_token_id]), None, max_new_tokens=4, steps=4)


def test_right_padding_is_rejected_with_the_row(model, prompts):
    ids = torch.tensor([prompts[0][:3], prompts[0][:3]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match=r"rows \[1\] are not left-padded"):
        _run(model, ids, mask, max_new_tokens=4, steps=4)


def test_left_padded_positions_count_real_tokens_only():
    canvas = make_canvas(
        torch.tensor([[9, 9, 5, 6], [1, 2, 3, 4]]), torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]), 2, 0
    )
    assert canvas.position_ids.tolist() == [[1, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    allowed = canvas.allowed(slice(None), slice(None))[0, 0]
    assert not allowed[2:, :2].any() and allowed[2:, 2:].all()
    # the sampler's broadcast form: the same keys for every real query of a row
    assert canvas.key_mask().shape == (2, 1, 1, 6)
    assert torch.equal(canvas.key_mask()[:, 0, 0], canvas.valid)
    assert torch.equal(canvas.key_mask()[0, 0].expand(4, 6), allowed[2:])
