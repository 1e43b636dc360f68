"""Stage noising: SFT never masks or scores the prompt but does mask and score pads; packed stages
apply annealing, truncation and prefix conditioning (paper §B.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_helpers import SFT_LEN

from diffucoder.model import build_model
from diffucoder.train.batches import BatchStream
from diffucoder.train.config import TrainStageConfig
from diffucoder.train.loop import step_generator
from diffucoder.train.sft_data import SFTExamples
from diffucoder.train.stages import PackedDiffusionStep, SFTDiffusionStep, StepContext, conditional_rows


class Recorder(torch.nn.Module):
    """Wraps the real model and keeps what it was called with."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = []
        self.causal = []  # the causal flag of each call

    def forward(self, ids, attention_mask=None, logits_at=None, *, causal=False):
        self.calls.append((ids.clone(), attention_mask))
        self.causal.append(causal)
        return self.model(ids, attention_mask=attention_mask, logits_at=logits_at, causal=causal)


def _ctx(step, progress=1.0, seed=0):
    return StepContext(
        step,
        progress,
        step_generator(seed, torch.device("cpu"), 0, step, 0),
        step_generator(seed, torch.device("cpu"), 99, step),
    )


def test_sft_prompt_never_noised_or_scored_pads_are(sft_file, tokenizer, small_model_cfg):
    torch.manual_seed(0)
    model = Recorder(build_model(small_model_cfg, tokenizer))
    cfg = TrainStageConfig(seq_len=SFT_LEN, conditional_mask="always")
    source = SFTExamples(sft_file, tokenizer, SFT_LEN)
    step = SFTDiffusionStep("instruct", BatchStream(source, 8, 0, 1, 0), cfg, tokenizer.mask_token_id)
    pads_masked = 0
    for s in range(6):
        batch = step.stream.next_batch()
        loss, stats = step.loss(model, batch, _ctx(s))
        noisy, attention = model.calls[-1]
        masked = noisy == tokenizer.mask_token_id
        prompt = batch["prompt_mask"]
        assert not (masked & prompt).any(), "a prompt token was noised"
        assert torch.equal(noisy[prompt], batch["input_ids"][prompt])
        pads_masked += int((masked & (batch["input_ids"] == tokenizer.pad_token_id)).sum())
        assert attention is None  # pads attended like ordinary tokens
        assert (
            stats["masked_tokens"] == masked[:, 1:].sum()
        )  # exactly the noised (non-prompt) targets are scored
    assert pads_masked > 0


def test_prompt_gets_no_gradient_signal(sft_file, tokenizer):
    """Scoring check through the loss itself: changing a prompt target's logit cannot change the loss."""
    from diffucoder.train.objective import elbo_loss, forward_noise

    source = SFTExamples(sft_file, tokenizer, SFT_LEN)
    ids = torch.from_numpy(source.input_ids[:4])
    prompt = torch.from_numpy(source.prompt_mask[:4])
    noised = forward_noise(ids, ~prompt, tokenizer.mask_token_id, generator=torch.Generator().manual_seed(1))
    logits = torch.randn(4, SFT_LEN, len(tokenizer), requires_grad=True)
    loss, _ = elbo_loss(logits, ids, noised.masked, noised.t)
    loss.backward()
    grad_rows = logits.grad.abs().sum(-1)  # (B, T): which logits (predicting position i + 1) got signal
    target_is_prompt = prompt[:, 1:]
    assert grad_rows[:, :-1][target_is_prompt].sum() == 0
    target_is_pad = (ids[:, 1:] == tokenizer.pad_token_id) & noised.masked[:, 1:]
    assert target_is_pad.any() and (grad_rows[:, :-1][target_is_pad] > 0).all()


def test_progressive_conditional_share_ramps_over_epoch_one():
    gen = torch.Generator().manual_seed(0)
    early = conditional_rows(4000, 0.1, "progressive", gen).float().mean()
    late = conditional_rows(4000, 0.9, "progressive", gen).float().mean()
    assert abs(early - 0.1) < 0.03 and abs(late - 0.9) < 0.03
    assert conditional_rows(16, 1.2, "progressive", gen).all()
    assert conditional_rows(16, 0.0, "always", gen).all()


def test_packed_annealing_then_bidirectional(packed_dir, tokenizer, tmp_path, small_model_cfg):
    from train_helpers import SEQ_LEN

    from diffucoder.train.packed_data import PackedShards

    torch.manual_seed(0)
    model = Recorder(build_model(small_model_cfg, tokenizer))
    cfg = TrainStageConfig(seq_len=SEQ_LEN, anneal_steps=4, truncate_prob=0.0, prefix_prob=0.0)
    source = PackedShards(packed_dir, SEQ_LEN, len(tokenizer), tmp_path)
    step = PackedDiffusionStep(
        "pretrain", BatchStream(source, 4, 0, 1, 0), cfg, tokenizer.mask_token_id, tokenizer.pad_token_id
    )
    densities = []
    for s in range(5):
        loss, stats = step.loss(model, step.stream.next_batch(), _ctx(s))
        assert torch.isfinite(loss)
        _, attention = model.calls[-1]
        densities.append(None if attention is None else float(attention.float().mean()))
        if attention is not None:
            causal = torch.ones(SEQ_LEN, SEQ_LEN, dtype=torch.bool).tril()
            assert attention[0, 0][causal].all()  # causal part always allowed
    assert densities[3] is None and densities[4] is None  # ratio reached 1 at step 3
    assert densities[0] < densities[1] < densities[2] < 1.0


def test_packed_truncation_hides_the_cut_tail(packed_dir, tokenizer, tmp_path, small_model_cfg):
    from train_helpers import SEQ_LEN

    from diffucoder.train.packed_data import PackedShards

    model = Recorder(build_model(small_model_cfg, tokenizer))
    cfg = TrainStageConfig(seq_len=SEQ_LEN, anneal_steps=0, truncate_prob=1.0, prefix_prob=1.0)
    source = PackedShards(packed_dir, SEQ_LEN, len(tokenizer), tmp_path)
    step = PackedDiffusionStep(
        "pretrain", BatchStream(source, 4, 0, 1, 0), cfg, tokenizer.mask_token_id, tokenizer.pad_token_id
    )
    step.loss(model, step.stream.next_batch(), _ctx(0))
    noisy, attention = model.calls[-1]
    assert attention is not None and attention.shape == (4, 1, 1, SEQ_LEN)
    kept = attention[:, 0, 0, :]
    assert not (noisy[~kept] == tokenizer.mask_token_id).any()  # cut tail never noised
    assert (noisy[~kept] == tokenizer.pad_token_id).all()
    first_masked = np.array(
        [int(np.argmax(row)) if row.any() else SEQ_LEN for row in (noisy == tokenizer.mask_token_id).numpy()]
    )
    assert (first_masked >= 1).all()  # the un-noised prefix is at least one token


def test_packed_causal_phase_is_next_token_lm_then_annealing_starts(
    packed_dir, tokenizer, tmp_path, small_model_cfg
):
    from train_helpers import SEQ_LEN

    from diffucoder.train.packed_data import PackedShards

    torch.manual_seed(0)
    model = Recorder(build_model(small_model_cfg, tokenizer))
    cfg = TrainStageConfig(
        seq_len=SEQ_LEN, causal_steps=2, anneal_steps=2, truncate_prob=0.0, prefix_prob=0.0
    )
    source = PackedShards(packed_dir, SEQ_LEN, len(tokenizer), tmp_path)
    step = PackedDiffusionStep(
        "pretrain", BatchStream(source, 4, 0, 1, 0), cfg, tokenizer.mask_token_id, tokenizer.pad_token_id
    )
    batch = step.stream.next_batch()
    loss, stats = step.loss(model, batch, _ctx(1))
    ids, attention = model.calls[-1]
    assert torch.equal(ids, batch["input_ids"])  # nothing masked: clean tokens in, next token out
    assert attention is None and model.causal[-1]  # causal attention, as SDPA's is_causal
    # the model attends causally: changing token k leaves every earlier position's logits unchanged
    with torch.no_grad():
        logits = model.model(ids, causal=True)
        changed = ids.clone()
        changed[:, 10] = (changed[:, 10] + 1) % len(tokenizer)
        logits_changed = model.model(changed, causal=True)
    assert torch.allclose(logits_changed[:, :10], logits[:, :10], atol=1e-5)
    assert not torch.allclose(logits_changed[:, 10:], logits[:, 10:], atol=1e-3)
    # and the loss is plain next-token cross-entropy on those logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert stats["causal_lm"] == 1.0 and stats["anneal_ratio"] == 0.0
    # step 2 is the first diffusion step: masked input, annealing at its first ratio (1/2)
    loss, stats = step.loss(model, step.stream.next_batch(), _ctx(2))
    ids, attention = model.calls[-1]
    assert (ids == tokenizer.mask_token_id).any()
    assert stats["causal_lm"] == 0.0 and stats["anneal_ratio"] == 0.5
