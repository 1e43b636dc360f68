"""Typed config for stages 1-3 (pretrain, midtrain, instruct). Owned by diffucoder.train.

One class serves all three stages: the stages differ only by these values (and by the data format
the stage name implies: packed token shards for pretrain/midtrain, chat rows for instruct).
Class defaults are the paper's Stage I values (§B.1, Table 3); ``presets/paper-7b.yaml``
holds the Stage II/III values that differ, ``presets/tiny.yaml`` the laptop-scale ones.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffucoder.config_base import StrictModel

# The four training stages in DAG order (paper §3), by the data they read: the one definition the
# CLI, configs, planner, launchers and the DAG all use.
PACKED_STAGES = ("pretrain", "midtrain")  # packed token shards (stages 1-2)
SFT_STAGES = ("instruct",)  # chat rows (stage 3)
RL_STAGES = ("grpo",)  # problems with tests (stage 4, diffucoder.rl)
STAGES = PACKED_STAGES + SFT_STAGES + RL_STAGES


class TrainStageConfig(StrictModel):
    """One training stage (optimisation, batch, diffusion noise, checkpoints, logging)."""

    # --- optimisation (AdamW, linear warmup then cosine decay to min_lr_ratio * lr) ---
    lr: float = Field(2e-5, gt=0, description="peak learning rate (paper: 2e-5 stage I, 1e-5 stages II-III)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decays to this fraction of the peak")
    warmup_steps: int | None = Field(
        20_000, ge=0, description="linear warmup length in optimizer steps (set null to use warmup_ratio)"
    )
    warmup_ratio: float | None = Field(
        None, ge=0, lt=1, description="warmup as a fraction of total steps (paper stage III: 0.1)"
    )
    weight_decay: float = Field(
        0.0, ge=0, description="decoupled AdamW weight decay (paper does not state one)"
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_eps: float = Field(1e-8, gt=0)
    max_grad_norm: float = Field(1.0, gt=0, description="global grad-norm clipping threshold")

    # --- length of the stage ---
    max_steps: int | None = Field(
        100_000,
        ge=1,
        description="optimizer steps (paper stage I: early-stopped at 100k); caps `epochs` when both set",
    )
    epochs: float | None = Field(
        None, gt=0, description="passes over the data (paper: 4 for stage II, 5 for stage III)"
    )

    # --- batch ---
    micro_batch_size: int = Field(
        2, ge=1, description="sequences per rank per forward pass (paper: 2 per GPU)"
    )
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches accumulated per optimizer step")
    seq_len: int = Field(
        4096,
        ge=8,
        description="tokens per sequence: must equal the packed shards' seq_len (stages I-II); "
        "the fixed padded length of every SFT example (stage III, paper: 2048)",
    )

    # --- numerics / memory ---
    precision: Literal["auto", "bf16", "bf16-mixed", "fp32"] = Field(
        "auto",
        description="auto = bf16 on a GPU with bfloat16; on CPU bf16-mixed where the CPU computes "
        "bfloat16 natively (AVX512-BF16 or AMX), else fp32 (diffucoder.train.precision; stage 4: fp32 "
        "on CPU). bf16 = bfloat16 weights (DeepSpeed keeps fp32 master weights); bf16-mixed = float32 "
        "weights and gradients, forward under bfloat16 autocast (with model.attn_implementation="
        "sdpa_fp32, ~1.3x faster tiny steps with native bfloat16, 13-17x slower without)",
    )
    zero_stage: Literal[0, 2, 3] = Field(
        2,
        description="DeepSpeed ZeRO stage (paper stage III: ZeRO-2). 0 = plain data parallel: nothing "
        "to partition on one rank, where ZeRO-2's gradient buffers cost 3-15 % of a tiny CPU step",
    )

    # --- diffusion noise (paper Eq. 1, §B.1) ---
    mask_eps: float = Field(1e-3, gt=0, lt=1, description="t ~ U[eps, 1]; bounds the 1/t weight by 1/eps")
    anneal_steps: int = Field(
        10_000,
        ge=0,
        description="attention-mask annealing length (packed stages; 0 = bidirectional from step 0)",
    )
    causal_steps: int = Field(
        0,
        ge=0,
        description="packed stages: train as a causal LM (next-token loss, causal attention) for the first "
        "N optimizer steps, then anneal to bidirectional diffusion. A stand-in for the pretrained AR model "
        "the paper adapts (Qwen2.5-Coder) when there is none (tiny preset); 0 with a real base model",
    )
    truncate_prob: float = Field(
        0.01, ge=0, le=1, description="share of packed samples cut to a random length"
    )
    prefix_prob: float = Field(
        0.01, ge=0, le=1, description="share of packed samples with an un-noised prefix"
    )
    conditional_mask: Literal["always", "progressive"] = Field(
        "progressive",
        description="SFT: 'always' never noises the prompt; 'progressive' (paper's final recipe) raises the "
        "share of conditionally-masked samples linearly from 0 to 1 over the first epoch, then 'always'",
    )

    # --- checkpoints and logging ---
    save_every_steps: int = Field(
        1000, ge=1, description="checkpoint every N optimizer steps (and at the end)"
    )
    keep_last: int = Field(3, ge=1, description="complete checkpoints kept; older ones are deleted")
    log_every_steps: int = Field(
        10, ge=1, description="metrics are averaged and logged every N optimizer steps"
    )

    @model_validator(mode="after")
    def _one_length_and_one_warmup(self) -> TrainStageConfig:
        problems = []
        if self.max_steps is None and self.epochs is None:
            problems.append("set max_steps or epochs (both are null)")
        if (self.warmup_steps is None) == (self.warmup_ratio is None):
            problems.append(
                f"set exactly one of warmup_steps ({self.warmup_steps}) and warmup_ratio ({self.warmup_ratio}); "
                "set the other to null"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def total_steps(self, samples_per_epoch: int, world_size: int) -> int:
        """Optimizer steps for this stage: ``max_steps``, or ``epochs`` over the data, whichever is smaller."""
        steps = []
        if self.epochs is not None:
            per_step = self.micro_batch_size * self.grad_accum_steps * world_size
            steps.append(max(1, int(self.epochs * samples_per_epoch // per_step)))
        if self.max_steps is not None:
            steps.append(self.max_steps)
        return min(steps)

    def warmup_for(self, total_steps: int) -> int:
        """Warmup length in optimizer steps for a stage of ``total_steps``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(round(self.warmup_ratio * total_steps))
