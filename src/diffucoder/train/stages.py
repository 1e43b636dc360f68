"""What differs between stages 1-3: the data source and how a batch is noised (paper §3, §B.1).

A stage is a :class:`StageStep`: it owns a :class:`~diffucoder.train.batches.BatchStream` and a
``loss(model, batch, ctx)`` that noises the batch and returns the ELBO. The shared loop
(:mod:`diffucoder.train.loop`) does everything else. Stage 4 (GRPO) plugs in the same way with its
own stream (rollouts) and loss.

- Packed stages (pretrain, midtrain): every position maskable, except that ``truncate_prob`` of the
  samples are cut to a random length (tail padded and hidden) and ``prefix_prob`` keep a random
  prefix un-noised (paper §B.1); attention is annealed from causal to bidirectional over
  ``anneal_steps`` optimizer steps (paper §B.1).
- SFT (instruct): only response positions (pads included) are maskable, so the prompt is never
  noised or scored; with ``conditional_mask: progressive`` the share of samples treated that way
  rises from 0 to 1 over the first epoch and the rest are noised unconditionally, bridging from the
  unconditional stages I-II (paper §B.1). Attention is full, pads attended (apple/ml-diffucoder#9).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffucoder.model.masks import anneal_ratio, annealed_attention_mask
from diffucoder.train.batches import BatchStream
from diffucoder.train.config import TrainStageConfig
from diffucoder.train.objective import (
    elbo_loss,
    forward_noise,
    random_prefix_condition,
    random_truncation,
    scored_logit_positions,
)


@dataclass(frozen=True)
class StepContext:
    """Where the loop is when it asks a stage for a loss.

    Attributes:
        step: the optimizer step being accumulated (0-based).
        progress: epochs completed at the start of this micro-batch (0.5 = half of epoch 1).
        generator: this rank's RNG for this micro-batch (noise draws), derived from (seed, rank, step, micro).
        shared_generator: the same on every rank for this step (draws that must agree across ranks).
    """

    step: int
    progress: float
    generator: torch.Generator
    shared_generator: torch.Generator


class StageStep(ABC):
    """The plug-in point of the shared loop: data plus a loss (the contract torchtune's recipe
    interface writes down for a recipe, here for a stage).

    A stage sets ``name`` and ``stream`` and implements :meth:`loss`. The other hooks do nothing
    here; the loop calls every one of them, and a stage overrides those it needs (stage 4 keeps its
    reference model in checkpoints, logs sample rollouts, reward trends and reward curves).
    """

    name: str
    stream: BatchStream  # or anything with the same next_batch / progress / state_dict interface

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss with grad for this rank's micro-batch, and float stats to log."""

    def save_extra(self, ckpt_dir: Path, is_main: bool) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Write stage state beyond the engine and the stream position into a checkpoint being built."""

    def load_extra(self, ckpt_dir: Path) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Restore what :meth:`save_extra` wrote."""

    def attach_tracker(self, tracker) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Called on rank 0 with the stage's MLflow run before training (for artifacts of the stage's own)."""

    def summary_metrics(self, history: list[dict[str, float]]) -> dict[str, float]:
        """Run-level metrics computed over the whole logged history, logged once at the end."""
        return {}

    def figures(self, history: list[dict[str, float]]) -> dict[str, Any]:
        """Matplotlib figures (artifact path -> figure) for the stage's MLflow run, beside the loss plot."""
        return {}


def _with_token_stats(stats: dict[str, float], input_ids: torch.Tensor) -> dict[str, float]:
    return {**stats, "elbo_per_masked_token": stats["loss"], "tokens": float(input_ids.numel())}


@dataclass
class PackedDiffusionStep(StageStep):
    """Unconditional masked-diffusion step over packed rows (pretrain, midtrain)."""

    name: str
    stream: BatchStream
    cfg: TrainStageConfig
    mask_token_id: int
    pad_token_id: int

    def loss(self, model, batch, ctx):
        ids = batch["input_ids"].to(ctx.generator.device)  # (B, T)
        if ctx.step < self.cfg.causal_steps:
            return self._causal_loss(model, ids)
        ids, keep = random_truncation(ids, self.cfg.truncate_prob, self.pad_token_id, ctx.generator)
        maskable = random_prefix_condition(keep, self.cfg.prefix_prob, ctx.generator)
        noised = forward_noise(ids, maskable, self.mask_token_id, self.cfg.mask_eps, ctx.generator)
        ratio = anneal_ratio(ctx.step - self.cfg.causal_steps, self.cfg.anneal_steps)
        allowed = annealed_attention_mask(ids.shape[1], ratio, ctx.shared_generator, device=ids.device)
        if not bool(keep.all()):
            # hide the truncated tails as keys; rows still attend at least their kept prefix
            padding = keep[:, None, None, :]  # (B, 1, 1, T)
            allowed = padding if allowed is None else allowed & padding
        logits = model(
            noised.noisy_ids, attention_mask=allowed, logits_at=scored_logit_positions(noised.masked)
        )
        loss, stats = elbo_loss(logits, ids, noised.masked, noised.t)
        return loss, {**_with_token_stats(stats, ids), "anneal_ratio": ratio, "causal_lm": 0.0}

    @staticmethod
    def _causal_loss(model, ids):
        """Next-token cross-entropy under a causal mask: the model as the AR LM it is adapted from.

        The diffusion LM keeps the AR shift (``logits[:, i]`` predicts token ``i + 1``), so what this
        phase learns is exactly what adaptation starts from in the paper: the same head, the same
        positions, only the attention mask and the noise differ.
        """
        logits = model(ids, causal=True)
        ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        stats = {"loss": float(ce.detach()), "ce": float(ce.detach()), "tokens": float(ids.numel())}
        return ce, {**stats, "anneal_ratio": 0.0, "causal_lm": 1.0}


def conditional_rows(batch_size: int, progress: float, mode: str, generator: torch.Generator) -> torch.Tensor:
    """(B,) bool: which samples keep their prompt un-noised.

    ``always``: every sample. ``progressive``: during the first epoch each sample independently with
    probability equal to the epoch progress (0 -> 1), every sample afterwards.
    """
    if mode == "always" or progress >= 1.0:
        return torch.ones(batch_size, dtype=torch.bool, device=generator.device)
    return torch.rand(batch_size, generator=generator, device=generator.device) < progress


@dataclass
class SFTDiffusionStep(StageStep):
    """Conditional masked-diffusion step over fixed-length chat examples (instruct)."""

    name: str
    stream: BatchStream
    cfg: TrainStageConfig
    mask_token_id: int

    def loss(self, model, batch, ctx):
        ids = batch["input_ids"].to(ctx.generator.device)  # (B, T)
        prompt = batch["prompt_mask"].to(ctx.generator.device)  # (B, T) bool
        conditional = conditional_rows(ids.shape[0], ctx.progress, self.cfg.conditional_mask, ctx.generator)
        maskable = ~(
            prompt & conditional[:, None]
        )  # response (and pads) always; prompt only if unconditional
        noised = forward_noise(ids, maskable, self.mask_token_id, self.cfg.mask_eps, ctx.generator)
        # no attention mask: pads are attended like any token
        logits = model(noised.noisy_ids, logits_at=scored_logit_positions(noised.masked))
        loss, stats = elbo_loss(logits, ids, noised.masked, noised.t)
        return loss, {**_with_token_stats(stats, ids), "conditional_share": float(conditional.float().mean())}
