"""GRPO learns where the reward has signal: the full round machinery on a token-level toy reward.

:class:`GRPOStep` (rollouts with the diffusion sampler, advantages, old/reference estimates under
shared mask seeds, mu inner iterations, reference sync, the clipped loss) drives a small model; only
the reward function passed in is one with a known optimum and no sandbox: the share of completion tokens
whose id is even. A random model scores about 0.5, so every group has reward variance from the
start, and a correct policy gradient must push the share up.
"""

from __future__ import annotations

import copy

import pytest
import torch

from diffucoder.config import load_config
from diffucoder.rl.data import ProblemSource
from diffucoder.rl.rewards import RewardBatch
from diffucoder.rl.rollout import Problem
from diffucoder.rl.trainer import GRPOStep
from diffucoder.train.distributed import DistInfo


def even_token_reward(rollouts):
    """A reward function in the trainer's shape: the share of even completion token ids."""
    comp = rollouts.sequences[:, rollouts.prompt_len :]
    share = ((comp % 2 == 0).float()).mean(dim=1)
    return RewardBatch(total=share, code=share, format=torch.ones_like(share), infra_errors=0)


@pytest.mark.parametrize("estimator", ["coupled", "full_mask"])
def test_grpo_raises_a_reward_that_has_signal(small_model, tokenizer, estimator):
    cfg = load_config(
        "tiny",
        [
            f"grpo.estimator={estimator}",
            "grpo.num_generations=8",
            "grpo.micro_batch_size=8",
            "grpo.grad_accum_steps=2",
            "grpo.num_iterations=2",
            "grpo.max_steps=48",
            "grpo.save_every_steps=48",
            "grpo.ref_sync_steps=8",
            "grpo.rollout.max_completion_length=8",
            "grpo.rollout.steps=8",
            "grpo.rollout.temperature=1.0",
            "grpo.rollout.max_prompt_length=16",
            "grpo.rollout.fast=false",  # 8-token completions; the preset's cache blocks are 16
        ],
    )
    model = copy.deepcopy(small_model).train()
    reference = copy.deepcopy(small_model).eval()
    problems = ProblemSource(
        [Problem(f"p{i}", f"Write function number {i}.", ["assert True"]) for i in range(8)]
    )
    step = GRPOStep(
        cfg,
        problems,
        model,
        reference=reference,
        tokenizer=tokenizer,
        reward=even_token_reward,
        dist=DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99))
    rewards = []
    for _ in range(cfg.grpo.max_steps):
        for _ in range(cfg.grpo.grad_accum_steps):
            batch = step.next_batch()
            loss, stats = step.loss(model, batch, ctx=None)
            (loss / cfg.grpo.grad_accum_steps).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        rewards.append(stats["reward/total/mean"])
    quarter = len(rewards) // 4
    first, last = sum(rewards[:quarter]) / quarter, sum(rewards[-quarter:]) / quarter
    assert last > first + 0.15, rewards
    assert stats["kl"] > 0  # the policy moved away from the (synced) reference
