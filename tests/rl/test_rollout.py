"""Rollouts: prompts, left truncation, completion masks, group layout."""

from __future__ import annotations

import pytest
import torch

from diffucoder.config import load_config
from diffucoder.rl.estimators import token_logps
from diffucoder.rl.rollout import (
    Problem,
    completion_mask,
    concat_rollouts,
    encode_prompts,
    generate_rollouts,
    rollout_decoding,
    take_rollouts,
    user_message,
)


def test_completion_mask_runs_through_first_im_end():
    comp = torch.tensor([[5, 6, 9, 7, 9], [5, 6, 7, 8, 8]])
    assert completion_mask(comp, 9).tolist() == [[True, True, True, False, False], [True] * 5]


def test_prompts_are_chat_templated_and_left_truncated(tokenizer):
    cfg = load_config("tiny").grpo.rollout
    long = Problem("a", "word " * 300, ["assert f(1) == 1"])
    short = Problem("b", "Implement `f(x)`.", ["assert f(1) == 1"])
    ids, attention = encode_prompts([long, short], tokenizer, cfg)
    assert ids.shape[1] == cfg.max_prompt_length and attention[0].all()
    text = tokenizer.decode(ids[0])
    assert text.endswith("<|im_start|>assistant\n")  # the generation prompt survives truncation
    assert not attention[1, 0] and attention[1, -1]  # left padding
    assert user_message(short, True).endswith("Test cases: assert f(1) == 1")
    assert user_message(Problem("c", "x\n```\ndef f(): ...\n```", ["t"]), True) == "x\n```\ndef f(): ...\n```"


def test_generate_rollouts_groups_and_scores_like_decoded(small_model, tokenizer):
    cfg = load_config(
        "tiny", ["grpo.rollout.max_completion_length=6", "grpo.rollout.steps=6", "grpo.rollout.fast=false"]
    )
    problems = [
        Problem("a", "Implement `f(x)`.", ["t"]),
        Problem("b", "Write a much longer question " * 3, ["t"]),
    ]
    out = generate_rollouts(
        small_model, tokenizer, problems, 3, cfg.grpo.rollout, cfg.decoding, torch.Generator().manual_seed(0)
    )
    assert out.sequences.shape[0] == 6 and out.completion_mask.shape == (6, 6) and out.trace.shape == (6, 6)
    assert [p.id for p in out.problems] == ["a"] * 3 + ["b"] * 3
    assert not out.prompt_valid[0, 0] and out.prompt_valid[3].all()  # the short group is left-padded
    assert (out.trace >= 0).all() and len(out.texts) == 6
    # the padded row scores exactly as its unpadded self
    p = out.prompt_len
    real = out.prompt_valid[0].sum()
    alone = out.sequences[:1, p - real :]
    with torch.no_grad():
        a = token_logps(small_model, out.sequences[:1], out.sequences[:1], p, out.prompt_valid[:1])
        b = token_logps(small_model, alone, alone, int(real), torch.ones(1, int(real), dtype=torch.bool))
    assert torch.allclose(a, b, atol=1e-5)


def test_rollouts_drawn_apart_concatenate_to_the_joint_batch(small_model, tokenizer):
    # dynamic sampling joins draws of different prompt widths: the join must equal one joint draw
    cfg = load_config(
        "tiny", ["grpo.rollout.max_completion_length=6", "grpo.rollout.steps=6", "grpo.rollout.fast=false"]
    )
    short, long = Problem("a", "Implement `f(x)`.", ["t"]), Problem("b", "A much longer question " * 3, ["t"])
    args = (cfg.grpo.rollout, cfg.decoding)
    joint = generate_rollouts(
        small_model, tokenizer, [short, long], 2, *args, torch.Generator().manual_seed(0)
    )
    generator = torch.Generator().manual_seed(0)
    apart = [generate_rollouts(small_model, tokenizer, [p], 2, *args, generator) for p in (short, long)]
    assert apart[0].prompt_len < apart[1].prompt_len
    joined = concat_rollouts(apart, tokenizer.pad_token_id)
    for name in ("sequences", "prompt_valid", "completion_mask", "trace"):
        assert torch.equal(getattr(joined, name), getattr(joint, name)), name
    assert joined.texts == joint.texts and joined.forward_passes == joint.forward_passes
    second = take_rollouts(joined, [2, 3])
    assert [p.id for p in second.problems] == ["b", "b"] and torch.equal(
        second.sequences, joint.sequences[2:]
    )


def test_preset_rollouts_use_the_dual_cache_and_a_misfit_length_is_named(small_model, tokenizer):
    cfg = load_config("tiny", ["grpo.rollout.max_completion_length=16", "grpo.rollout.steps=8"])
    decoding = rollout_decoding(cfg.grpo.rollout, cfg.decoding)
    assert decoding.fast.enabled and decoding.fast.kv_cache == "dual" and decoding.block_length == 16
    out = generate_rollouts(
        small_model,
        tokenizer,
        [Problem("a", "Implement `f(x)`.", ["t"])],
        2,
        cfg.grpo.rollout,
        cfg.decoding,
        torch.Generator().manual_seed(0),
    )
    assert out.completion_mask.shape == (2, 16) and (out.trace >= 0).all()
    misfit = load_config("tiny", ["grpo.rollout.max_completion_length=24", "grpo.rollout.steps=24"])
    with pytest.raises(
        ValueError, match=r"grpo.rollout \(max_completion_length=24.*block_length=16 must divide"
    ):
        rollout_decoding(misfit.grpo.rollout, misfit.decoding)
