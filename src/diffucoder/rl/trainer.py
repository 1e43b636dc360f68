"""Coupled-GRPO as a stage of the shared DeepSpeed loop (paper Algorithm 1, §2.3).

The loop (:mod:`diffucoder.train.loop`) asks the stage for one micro-batch and its loss at a time.
Stage 4 answers from a buffer of *generation rounds*; each round goes through named steps:

    sample()      rollout() - G completions per prompt with the current policy (diffusion sampler,
                  traces) - and score() - the injected reward function (the recipe's: format +
                  code rewards through the sandbox, :mod:`diffucoder.rl.rewards`) -, repeated
                  with the next prompts while groups lack reward variance (``redraw_flat_groups``)
    advantages()  group-relative (mean or leave-one-out, optional std scaling)
    estimate()    old-policy and reference log-prob estimates for every (iteration, micro-batch)
                  under its mask seed, without gradients

and the loop's micro-steps then call :meth:`GRPOStep.loss` (policy estimate under the same seed ->
clipped objective); DeepSpeed does backward, accumulation, clipping and the optimizer step. A round
feeds ``num_iterations`` (mu) optimizer steps of ``grad_accum_steps`` micro-batches each.

Randomness: rollouts (redraws included) draw from one generator keyed by (seed, rank, round); mask
seeds are keyed by (seed, rank, round, iteration, micro-batch). Both are pure functions of the round counter, which
the checkpoint stores, so "the rollout RNG" resumes exactly. Checkpoints fall between rounds
(``save_every_steps`` and the total are multiples of mu), so no half-used round needs saving.
Groups never span ranks: every rank samples all G completions of its own prompts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffucoder.config import RunConfig
from diffucoder.decoding.arness import global_arness, local_arness
from diffucoder.rl.advantages import group_advantages, rows_to_keep, varied_groups, zero_std_fraction
from diffucoder.rl.config import GRPOConfig
from diffucoder.rl.data import ProblemSource
from diffucoder.rl.estimators import estimate_logps
from diffucoder.rl.loss import grpo_loss
from diffucoder.rl.reference import load_reference, save_reference, sync_reference
from diffucoder.rl.rewards import RewardBatch, RewardFunction, concat_rewards, take_rewards
from diffucoder.rl.rollout import RolloutBatch, concat_rollouts, generate_rollouts, take_rollouts
from diffucoder.train.batches import BatchStream
from diffucoder.train.distributed import DistInfo, any_rank
from diffucoder.train.loop import step_generator
from diffucoder.train.stages import StageStep

log = logging.getLogger(__name__)

_ROLLOUT_SALT = 0xA11
_MASK_SALT = 0x3A5C
REFERENCE_FILE = "grpo/reference.pt"


@dataclass
class MicroBatch:
    """One micro-batch of a round, as the loop hands it to :meth:`GRPOStep.loss`.

    Attributes:
        sequences: [M, P + L] prompts and completions.
        prompt_valid: [M, P] bool.
        completion_mask: [M, L] bool.
        advantages: [M].
        mask_seed: seed of this (iteration, micro-batch)'s noised copies.
        old_logp / ref_logp: [M, L] estimates under that seed, or None (mu = 1 / beta = 0).
        round_metrics: the round's reward/AR-ness/time metrics, repeated on each of its micro-batches.
    """

    sequences: torch.Tensor
    prompt_valid: torch.Tensor
    completion_mask: torch.Tensor
    advantages: torch.Tensor
    mask_seed: int
    old_logp: torch.Tensor | None
    ref_logp: torch.Tensor | None
    round_metrics: dict[str, float] = field(default_factory=dict)


def mask_seed(seed: int, rank: int, round_index: int, iteration: int, micro: int) -> int:
    """The seed of one (iteration, micro-batch)'s masks: same for policy, old policy and reference."""
    state = np.random.SeedSequence([seed, _MASK_SALT, rank, round_index, iteration, micro])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> 1)


def rollout_metrics(rollouts: RolloutBatch, rewards: RewardBatch, group_size: int) -> dict[str, float]:
    """What a round reports besides time: rewards, zero-variance groups, lengths, AR-ness of the decode order."""
    lengths = rollouts.completion_mask.sum(dim=1).float()
    trace = rollouts.trace.cpu()
    return {
        **rewards.metrics(),
        "frac_reward_zero_std": zero_std_fraction(rewards.total, group_size),
        "completion_length": float(lengths.mean()),
        "completion_length_max": float(lengths.max()),
        "arness/local@1": float(local_arness(trace, 1).mean()),
        "arness/global@1": float(global_arness(trace, 1).mean()),
    }


# the quantities whose first-to-last-quarter change says whether the policy improved on its own problems
TREND_KEYS = ("reward/total/mean", "pass_rate")


def quarter_trend(history: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each key over the first and the last quarter of the logged rounds (one each if < 8).

    Rounds are weighted by the groups they drew (``round/groups_drawn``), so with redraws the
    numbers are the reward over every problem sampled in that quarter, not a mean of round means.
    The last-logged value alone says little: a tiny run's last round is 2-8 problems.
    """
    if len(history) < 2:
        return {}
    quarter = max(1, len(history) // 4)
    out = {}
    for name, part in (("first_quarter", history[:quarter]), ("last_quarter", history[-quarter:])):
        weights = np.array([h.get("round/groups_drawn", 1.0) for h in part])
        for key in TREND_KEYS:
            values = np.array([h.get(key, np.nan) for h in part])
            out[f"{key.removesuffix('/mean')}/{name}"] = float(np.average(values, weights=weights))
    return out


def format_samples(
    rollouts: RolloutBatch, rewards: RewardBatch, advantages: torch.Tensor, limit: int, step: int
) -> str:
    """A readable dump of the first ``limit`` rollouts with their rewards (logged as a text artifact)."""
    parts = [f"# rollouts at optimizer step {step}\n"]
    for i in range(min(limit, len(rollouts.texts))):
        parts.append(
            f"--- {rollouts.problems[i].id} | total {rewards.total[i]:.2f} code {rewards.code[i]:.2f} "
            f"format {rewards.format[i]:.2f} advantage {advantages[i]:+.3f}\n"
            f"[question] {rollouts.problems[i].question}\n[completion]\n{rollouts.texts[i]}\n"
        )
    return "\n".join(parts)


@dataclass
class SampledRound:
    """A round's rollouts and rewards: the rows kept for training and everything drawn (for metrics)."""

    rollouts: RolloutBatch
    rewards: RewardBatch
    drawn_rollouts: RolloutBatch
    drawn_rewards: RewardBatch
    rollout_s: float
    reward_s: float


class GRPOStep(StageStep):
    """Stage 4's plug-in for :class:`~diffucoder.train.loop.Trainer`: a round buffer and the GRPO loss.

    Args:
        cfg: the run config (``grpo`` and ``decoding`` sections are read).
        problems: this stage's problem source.
        policy: the DiffusionLM being trained (the module the DeepSpeed engine wraps).
        reference: frozen reference copy (None when ``beta == 0``).
        tokenizer: for prompts and decoding completions.
        reward: scores each round's rollouts (the recipe's is
            :class:`~diffucoder.rl.rewards.SandboxReward`; any callable of that shape will do).
        dist: this rank (rank, world size, device).
    """

    name = "grpo"

    def __init__(
        self,
        cfg: RunConfig,
        problems: ProblemSource,
        policy,
        *,
        reference,
        tokenizer,
        reward: RewardFunction,
        dist: DistInfo,
    ):
        self.cfg = cfg
        self.g: GRPOConfig = cfg.grpo
        self.problems = problems
        self.policy = policy
        self.reference = reference
        self.tokenizer = tokenizer
        self.reward = reward
        self.rank = dist.rank
        self.device = dist.device
        self.prompts = BatchStream(problems, self.g.prompts_per_round, dist.rank, dist.world_size, cfg.seed)
        self.round_index = 0
        self.buffer: list[MicroBatch] = []
        self.tracker = None

    # ----------------------------------------------------------------------------- the loop's API
    @property
    def stream(self) -> GRPOStep:
        """The loop's batch stream: the step itself, since micro-batches come out of generation rounds."""
        return self

    @property
    def usable_per_epoch(self) -> int:
        """Prompts used per epoch (``GRPOConfig.total_steps`` turns them into optimizer steps)."""
        return self.prompts.usable_per_epoch

    def next_batch(self) -> MicroBatch:
        """The next micro-batch; starts a new generation round when the last one is used up."""
        if not self.buffer:
            self.buffer = self._round()
            self.round_index += 1
        return self.buffer.pop(0)

    def loss(self, model, batch: MicroBatch, ctx) -> tuple[torch.Tensor, dict[str, float]]:
        """Policy estimate under the batch's mask seed, then the clipped GRPO objective."""
        start = time.perf_counter()
        logp = self._estimate(model, batch, batch.mask_seed)
        old = batch.old_logp if batch.old_logp is not None else logp.detach()
        loss, stats = grpo_loss(
            logp,
            old,
            batch.ref_logp,
            batch.advantages,
            batch.completion_mask,
            epsilon_low=self.g.epsilon_low,
            epsilon_high=self.g.epsilon_high,
            beta=self.g.beta,
            normalization=self.g.normalization,
        )
        tokens = float(batch.completion_mask.sum())
        return loss, {
            **stats.as_dict(),
            **batch.round_metrics,
            "tokens": tokens,
            "time/policy_estimate_s": time.perf_counter() - start,
        }

    # ----------------------------------------------------------------------------- a round
    def _estimate(self, model, batch: MicroBatch, seed: int) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return estimate_logps(
            model,
            batch.sequences,
            batch.sequences.shape[1] - batch.completion_mask.shape[1],
            batch.prompt_valid,
            mask_token_id=self.policy.mask_token_id,
            estimator=self.g.estimator,
            generator=generator,
            pairs=self.g.coupled_pairs,
            t_min=self.g.t_min,
            p_mask_prompt=self.g.p_mask_prompt,
        )

    def rollout(self, generator: torch.Generator) -> RolloutBatch:
        index = self.prompts.next_batch()["index"][:, 0].tolist()
        problems = [self.problems.problems[i] for i in index]
        was_training = self.policy.training
        self.policy.eval()
        try:
            return generate_rollouts(
                self.policy,
                self.tokenizer,
                problems,
                self.g.num_generations,
                self.g.rollout,
                self.cfg.decoding,
                generator,
            )
        finally:
            self.policy.train(was_training)

    def score(self, rollouts: RolloutBatch) -> RewardBatch:
        return self.reward(rollouts)

    def sample(self) -> SampledRound:
        """Rollouts and rewards of one round.

        Without ``redraw_flat_groups`` one draw is kept whole. With it, further prompt batches are
        drawn (same round generator, next prompts of the stream) while any rank still has fewer
        groups with reward variance than it needs, up to that many extra draws; the round keeps the
        groups with variance first, in draw order, and fills with flat ones. Every rank draws
        equally often, since under ZeRO-3 each forward is a collective.
        """
        generator = step_generator(self.cfg.seed, self.device, _ROLLOUT_SALT, self.rank, self.round_index)
        need, size = self.g.prompts_per_round, self.g.num_generations
        drawn, scored, varied, rollout_s, reward_s = [], [], 0, 0.0, 0.0
        while True:
            t0 = time.perf_counter()
            drawn.append(self.rollout(generator))
            t1 = time.perf_counter()
            scored.append(self.score(drawn[-1]))
            rollout_s, reward_s = rollout_s + t1 - t0, reward_s + time.perf_counter() - t1
            varied += len(varied_groups(scored[-1].total, size))
            if len(drawn) > self.g.redraw_flat_groups or not any_rank(varied < need, self.device):
                break
        if len(drawn) == 1:
            return SampledRound(drawn[0], scored[0], drawn[0], scored[0], rollout_s, reward_s)
        all_rollouts = concat_rollouts(drawn, self.tokenizer.pad_token_id)
        all_rewards = concat_rewards(scored)
        rows = rows_to_keep(all_rewards.total, size, need)
        return SampledRound(
            take_rollouts(all_rollouts, rows),
            take_rewards(all_rewards, rows),
            all_rollouts,
            all_rewards,
            rollout_s,
            reward_s,
        )

    def advantages(self, rewards: RewardBatch) -> torch.Tensor:
        return group_advantages(rewards.total, self.g.num_generations, self.g.advantage, self.g.scale_rewards)

    def _split(self, rollouts: RolloutBatch, advantages: torch.Tensor) -> list[MicroBatch]:
        m = self.g.micro_batch_size
        parts = []
        for iteration in range(self.g.num_iterations):
            for micro in range(self.g.grad_accum_steps):
                rows = slice(micro * m, (micro + 1) * m)
                parts.append(
                    MicroBatch(
                        sequences=rollouts.sequences[rows],
                        prompt_valid=rollouts.prompt_valid[rows],
                        completion_mask=rollouts.completion_mask[rows],
                        advantages=advantages[rows].to(self.device),
                        mask_seed=mask_seed(self.cfg.seed, self.rank, self.round_index, iteration, micro),
                        old_logp=None,
                        ref_logp=None,
                    )
                )
        return parts

    @torch.no_grad()
    def estimate(self, parts: list[MicroBatch]) -> None:
        """Old-policy (mu > 1) and reference (beta > 0) estimates, each under its micro-batch's seed."""
        for part in parts:
            if self.g.num_iterations > 1:
                part.old_logp = self._estimate(self.policy, part, part.mask_seed)
            if self.reference is not None and self.g.beta > 0:
                part.ref_logp = self._estimate(self.reference, part, part.mask_seed)

    def _maybe_sync_reference(self, step: int) -> bool:
        """Sync at the first round start after each multiple of ``ref_sync_steps`` optimizer steps."""
        k, mu = self.g.ref_sync_steps, self.g.num_iterations
        if self.reference is None or step == 0 or step // k == (step - mu) // k:
            return False
        sync_reference(self.reference, self.policy, self.g.ref_mixup_alpha, self.g.zero_stage)
        return True

    def _round(self) -> list[MicroBatch]:
        step = self.round_index * self.g.num_iterations
        synced = self._maybe_sync_reference(step)
        sampled = self.sample()
        rollouts, rewards = sampled.rollouts, sampled.rewards
        t0 = time.perf_counter()
        advantages = self.advantages(rewards)
        parts = self._split(rollouts, advantages)
        self.estimate(parts)
        size = self.g.num_generations
        metrics = {
            # rewards over every drawn group: the policy's reward on the problems, not on a selection
            **rollout_metrics(sampled.drawn_rollouts, sampled.drawn_rewards, size),
            "round/groups_drawn": float(len(sampled.drawn_rewards.total) // size),
            "round/groups_flat_kept": float(
                len(rewards.total) // size - len(varied_groups(rewards.total, size))
            ),
            "round/rollout_s": sampled.rollout_s,
            "round/reward_s": sampled.reward_s,
            "round/old_ref_estimate_s": time.perf_counter() - t0,
            "round/rollout_forward_passes": float(sampled.drawn_rollouts.forward_passes),
            "ref_synced": float(synced),
        }
        for part in parts:
            part.round_metrics = metrics
        if (
            self.tracker is not None
            and self.g.sample_rollouts
            and step % self.g.log_every_steps < self.g.num_iterations
        ):
            self.tracker.log_text(
                format_samples(rollouts, rewards, advantages, self.g.sample_rollouts, step),
                f"rollouts/step-{step:06d}.txt",
            )
        return parts

    # ----------------------------------------------------------------------------- stream state
    @property
    def progress(self) -> float:
        return self.prompts.progress

    @property
    def batch_progress(self) -> float:
        return self.prompts.batch_progress

    def state_dict(self) -> dict[str, Any]:
        if self.buffer:
            raise RuntimeError(
                f"GRPO checkpoint inside round {self.round_index} ({len(self.buffer)} micro-batches left)"
            )
        return {**self.prompts.state_dict(), "round": self.round_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts.load_state_dict(state)
        self.round_index = int(state["round"])

    # ----------------------------------------------------------------------------- checkpoint extras
    def save_extra(self, ckpt_dir: Path, is_main: bool) -> None:
        """The reference model (it drifts from every saved policy under mixup)."""
        if self.reference is not None and is_main:
            save_reference(self.reference, ckpt_dir / REFERENCE_FILE)

    def load_extra(self, ckpt_dir: Path) -> None:
        if self.reference is not None:
            load_reference(self.reference, ckpt_dir / REFERENCE_FILE)

    def attach_tracker(self, tracker) -> None:
        self.tracker = tracker

    def summary_metrics(self, history: list[dict[str, float]]) -> dict[str, float]:
        """Run-level metrics for the result and MLflow: reward and pass rate, first vs last quarter."""
        return quarter_trend(history)

    def figures(self, history: list[dict[str, float]]) -> dict[str, Any]:
        """Reward curves for the stage's MLflow run."""
        from diffucoder.plots import reward_figure

        return {"plots/reward.png": reward_figure(history)}
