"""Typed config for the `grpo` section (stage 4, coupled-GRPO). Owned by the rl package.

``GRPOConfig`` extends the stage 1-3 :class:`~diffucoder.train.config.TrainStageConfig` because
stage 4 runs in the same DeepSpeed loop: optimisation, ZeRO stage, checkpoints and logging keep
their meaning. The diffusion-noise fields of stages 1-3 (``mask_eps``, ``anneal_steps``,
``truncate_prob``, ``prefix_prob``, ``conditional_mask``, ``seq_len``) are not read by stage 4.

Batch arithmetic (as apple/ml-diffucoder's ``recipes/config_coupled_code.yaml``): one *generation
round* per rank draws ``micro_batch_size * grad_accum_steps / num_generations`` prompts, samples
``num_generations`` completions for each, and is reused for ``num_iterations`` (mu) optimizer steps,
each with fresh mask seeds. The paper's 8 GPUs x 5 completions x grad_accum 2 = 8 prompts x 10
rollouts per step.

Defaults are the paper's values where it gives one (G=10, T=1.2, mu=2, beta=0.01, eps=0.5, lr 1e-6
cosine to 10%, Adam betas (0.9, 0.99), weight decay 0.1, grad clip 0.2, reference sync 64 steps).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffucoder.config_base import StrictModel
from diffucoder.train.config import TrainStageConfig

Estimator = Literal["coupled", "decoupled", "full_mask"]


class RolloutConfig(StrictModel):
    """How completions are sampled (Dream sampler; paper §5, §B.1)."""

    temperature: float = Field(
        1.2, ge=0, description="rollout temperature (paper 1.2; the released yaml says 1.0)"
    )
    max_completion_length: int = Field(256, ge=2, description="completion length L (paper 256)")
    steps: int | None = Field(
        None, ge=1, description="denoising steps; None = max_completion_length (1 token/step)"
    )
    top_p: float | None = Field(0.95, gt=0, le=1, description="nucleus truncation of the sampler")
    alg: Literal["origin", "maskgit_plus", "topk_margin", "entropy"] = Field("entropy")
    fast: bool = Field(
        False, description="decode with the decoding section's Fast-dLLM settings (decoding.fast)"
    )
    max_prompt_length: int = Field(
        200, ge=8, description="prompts keep their LAST this many tokens (left truncation)"
    )
    system_prompt: str = Field(
        "You are a helpful assistant.", description="system turn of the chat prompt; empty = no system turn"
    )
    append_first_test: bool = Field(
        True,
        description="append 'Test cases: <first assert>' to questions without a code fence, as the "
        "released recipe does",
    )


class GRPOConfig(TrainStageConfig):
    """Coupled-GRPO (stage 4): rollouts, log-prob estimator, objective, reference model, optimisation."""

    # --- optimisation: the paper's stage-4 values (paper §B.1) ---
    lr: float = Field(1e-6, gt=0, description="peak learning rate (paper 1e-6, cosine to min_lr_ratio)")
    warmup_steps: int | None = Field(None, ge=0, description="set null to use warmup_ratio")
    warmup_ratio: float | None = Field(1e-4, ge=0, lt=1, description="released config: 1e-4")
    weight_decay: float = Field(0.1, ge=0)
    adam_beta2: float = Field(0.99, ge=0, lt=1)
    max_grad_norm: float = Field(0.2, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; a multiple of num_iterations")
    epochs: float | None = Field(1.0, gt=0, description="passes over the RL problems (paper: 1)")
    micro_batch_size: int = Field(5, ge=1, description="completions per rank per micro-batch (paper 5)")
    grad_accum_steps: int = Field(2, ge=1, description="micro-batches per optimizer step (paper 2)")
    save_every_steps: int = Field(
        64, ge=1, description="a multiple of num_iterations (checkpoints at round ends)"
    )

    # --- group sampling ---
    num_generations: int = Field(10, ge=2, description="G completions per prompt (paper 10)")
    num_iterations: int = Field(2, ge=1, description="mu: optimizer steps per generation round (paper 2)")
    rollout: RolloutConfig = RolloutConfig()
    redraw_flat_groups: int = Field(
        0,
        ge=0,
        description="dynamic sampling (DAPO; not in the paper): up to N extra prompt draws per round "
        "to replace groups whose G rewards are all equal (zero advantage, no policy gradient); "
        "0 = off, as in the paper",
    )

    # --- log-prob estimator (paper §2.3, App. A.3-A.4; d1's diffu-GRPO) ---
    estimator: Estimator = Field(
        "coupled",
        description="coupled: full-mask pass + complementary pair (paper); decoupled: same passes, "
        "independent pair masks; full_mask: d1's single full-mask pass",
    )
    coupled_pairs: int = Field(1, ge=1, description="lambda: (t, 1-t) pairs per estimate (paper 1)")
    t_min: float = Field(0.2, gt=0, lt=0.5, description="pair times t ~ U[t_min, 1 - t_min] (paper 0.2)")
    p_mask_prompt: float = Field(
        0.0, ge=0, lt=1, description="full_mask only: prompt-token mask prob (d1 0.15)"
    )

    # --- objective ---
    epsilon_low: float = Field(0.5, gt=0, lt=1, description="ratio clip 1 - eps_low (paper eps 0.5)")
    epsilon_high: float = Field(0.5, gt=0, description="ratio clip 1 + eps_high")
    beta: float = Field(
        0.01, ge=0, description="k3 KL weight to the reference (paper 0.01); 0 = no reference"
    )
    normalization: Literal["token", "sequence"] = Field(
        "token",
        description="token: sum over completion tokens / their count in the micro-batch (released code); "
        "sequence: mean over sequences of the per-sequence token mean (paper's 1/|o_i|)",
    )
    advantage: Literal["mean", "loo"] = Field(
        "mean", description="mean: r - mean(group) (paper's main row); loo: r - mean(others) (released code)"
    )
    scale_rewards: bool = Field(
        False, description="divide advantages by the group std + 1e-4 (released: false)"
    )

    # --- reference model ---
    ref_sync_steps: int = Field(
        64, ge=1, description="update the reference every N optimizer steps (paper 64)"
    )
    ref_mixup_alpha: float = Field(
        0.6, gt=0, le=1, description="ref <- alpha*policy + (1-alpha)*ref; 1.0 = hard copy (Algorithm 1)"
    )

    # --- logging ---
    sample_rollouts: int = Field(
        4, ge=0, description="rollouts written as text with their rewards per log step"
    )

    @model_validator(mode="after")
    def _grpo_batches(self) -> GRPOConfig:
        problems = []
        per_round = self.micro_batch_size * self.grad_accum_steps
        if per_round % self.num_generations:
            problems.append(
                f"micro_batch_size ({self.micro_batch_size}) x grad_accum_steps ({self.grad_accum_steps}) = "
                f"{per_round} completions per round is not a multiple of num_generations ({self.num_generations})"
            )
        mu = self.num_iterations
        if self.max_steps is not None and self.max_steps % mu:
            problems.append(f"max_steps ({self.max_steps}) must be a multiple of num_iterations ({mu})")
        if self.save_every_steps % mu:
            problems.append(
                f"save_every_steps ({self.save_every_steps}) must be a multiple of num_iterations ({mu}): "
                "checkpoints are taken between generation rounds"
            )
        steps = self.rollout.steps or self.rollout.max_completion_length
        if steps > self.rollout.max_completion_length:
            problems.append(f"rollout.steps ({steps}) > rollout.max_completion_length")
        if self.precision == "bf16-mixed":
            # the rollouts, old-policy and reference passes run outside the training loop's autocast,
            # so the ratio would compare a bf16-autocast policy pass with float32 ones
            problems.append("precision=bf16-mixed is not supported for grpo; use auto, bf16 or fp32")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def prompts_per_round(self) -> int:
        """Prompts one rank draws per generation round."""
        return self.micro_batch_size * self.grad_accum_steps // self.num_generations

    def total_steps(self, samples_per_epoch: int, world_size: int) -> int:
        """Optimizer steps: ``max_steps``, or ``epochs`` over the prompts (mu steps per round), whichever is smaller."""
        steps = []
        if self.epochs is not None:
            rounds = max(1, int(self.epochs * samples_per_epoch // (self.prompts_per_round * world_size)))
            steps.append(rounds * self.num_iterations)
        if self.max_steps is not None:
            steps.append(self.max_steps)
        return min(steps)
