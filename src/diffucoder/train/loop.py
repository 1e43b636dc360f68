"""The one training loop of stages 1-3 (and the base stage 4 reuses): a DeepSpeed recipe.

Shape of a recipe (as in torchtune): ``setup(resume)`` -> ``train()`` -> ``save_checkpoint()`` ->
``cleanup()``. What a stage contributes is a :class:`~diffucoder.train.stages.StageStep` (data
stream + loss); accumulation, clipping, the LR schedule, the DeepSpeed step, metrics, the progress
bar and checkpoints live here once.

Reproducibility: every random draw of the loop comes from a generator derived from
(seed, rank, step, micro-batch), never from global RNG state, so a resumed run redraws exactly the
masks it would have drawn. Global RNG states are still checkpointed for anything in the model that
uses them (dropout).
"""

from __future__ import annotations

import json
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from diffucoder.config import RunConfig
from diffucoder.model import save_model
from diffucoder.train import checkpoint as ckpt
from diffucoder.train import distributed
from diffucoder.train.config import TrainStageConfig
from diffucoder.train.deepspeed_config import deepspeed_config
from diffucoder.train.distributed import DistInfo
from diffucoder.train.schedule import build_scheduler
from diffucoder.train.stages import StageStep, StepContext

_SHARED_SALT = 0x5EED  # keeps the cross-rank generator's seed apart from every rank's own


def step_generator(seed: int, device: torch.device, *key: int) -> torch.Generator:
    """A fresh generator on ``device`` seeded from (seed, *key): no state to save, same draws on resume."""
    state = np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _grad_norm(model: torch.nn.Module) -> float:
    """Global 2-norm of the parameters' gradients (before clipping)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else float("nan")


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """What a checkpoint records besides weights and optimizer (``trainer_state.json``)."""

    step: int = 0
    tokens: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # logged metrics, for the loss plot
    run_id: str | None = None  # MLflow run to continue on resume


@dataclass(frozen=True)
class TrainOutcome:
    steps: int
    tokens: int
    last_metrics: dict[str, float]
    checkpoint_uri: str | None
    history: list[dict[str, float]]


class Trainer:
    """DeepSpeed training of one stage.

    Args:
        run_cfg: the resolved run config: the stage's section, the seed of the per-step generators
            and the model section come from it, and it is stored in every checkpoint.
        stage: which stage (its section of ``run_cfg`` configures the loop).
        step_fn: the stage plug-in (data stream + loss).
        model: the module to train (already on ``dist.device``; DeepSpeed wraps it).
        tokenizer: saved with every model checkpoint.
        out_uri: the stage's output URI (checkpoints go under it).
        dist: this rank.
        total_steps: optimizer steps to run in all (a resumed run continues to the same total).
        precision: ``bf16``, ``bf16-mixed`` (forward under bfloat16 autocast, float32 weights) or ``fp32``.
        log_fn: called on rank 0 with (metrics, step) every ``log_every_steps``.

    A resume refuses a checkpoint whose model section, stage, world size, seed or total steps
    differ (``guard``).
    """

    def __init__(
        self,
        run_cfg: RunConfig,
        stage: str,
        step_fn: StageStep,
        model: torch.nn.Module,
        *,
        tokenizer: PreTrainedTokenizerBase,
        out_uri: str,
        dist: DistInfo,
        total_steps: int,
        precision: str,
        log_fn: Callable[[dict[str, float], int], None] | None = None,
    ):
        self.cfg: TrainStageConfig = getattr(run_cfg, stage)
        self.step_fn = step_fn
        self.model = model
        self.tokenizer = tokenizer
        self.out_uri = out_uri
        self.dist = dist
        self.total_steps = total_steps
        self.precision = precision
        self.seed = run_cfg.seed
        self.config_yaml = run_cfg.to_yaml()
        self.guard: dict[str, Any] = {
            "model": run_cfg.model.model_dump(mode="json"),
            "stage": stage,
            "world_size": dist.world_size,
            "seed": run_cfg.seed,
            "total_steps": total_steps,
        }
        self.log_fn = log_fn
        self.local_root = ckpt.local_root_for(out_uri)
        self.state = TrainState()
        self.engine = None
        self._measured_grad_norm = float("nan")  # per optimizer step, where DeepSpeed reports none
        self.last_checkpoint: str | None = None

    # ----------------------------------------------------------------------------- setup
    def setup(self, resume: str = "auto") -> None:
        """Build optimizer, LR schedule and the DeepSpeed engine; restore a checkpoint per ``resume``.

        Args:
            resume: ``auto`` (newest complete checkpoint under ``out_uri``, if any), ``none``, or a checkpoint URI.
        """
        import deepspeed

        if self.precision in ("fp32", "bf16-mixed"):
            self.model.float()
        optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.cfg.lr,
            betas=(self.cfg.adam_beta1, self.cfg.adam_beta2),
            eps=self.cfg.adam_eps,
            weight_decay=self.cfg.weight_decay,
            # one fused kernel over each parameter instead of ~10 elementwise passes: the same
            # update bit for bit, 1 ms instead of 7 per step of the tiny model on an AVX2 CPU
            # (benchmarks/bench_step_overhead.py, BENCHMARKS.md `## train`)
            fused=True,
        )
        warmup = self.cfg.warmup_for(self.total_steps)
        scheduler = build_scheduler(optimizer, warmup, self.total_steps, self.cfg.min_lr_ratio)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=deepspeed_config(self.cfg, self.dist.world_size, self.precision),
            dist_init_required=False,
        )
        source = self._resolve_resume(resume)
        if source is not None:
            self._load(source)

    def _resolve_resume(self, resume: str) -> Path | None:
        """Rank 0 picks and (if remote) downloads the checkpoint; every rank gets its local path."""
        choice: str | None = None
        if self.dist.is_main:
            if resume == "auto":
                uri = ckpt.find_latest(self.out_uri)
                choice = str(ckpt.materialize(uri, self.local_root)) if uri else None
            elif resume != "none":
                choice = str(ckpt.materialize(resume, self.local_root))
        choice = distributed.broadcast_object(choice)
        return Path(choice) if choice else None

    def _load(self, path: Path) -> None:
        saved = ckpt.read_trainer_state(path)
        problems = [
            f"{key}: checkpoint {saved['guard'].get(key)!r} != now {value!r}"
            for key, value in self.guard.items()
            if saved["guard"].get(key) != value
        ]
        if problems:
            raise ValueError(f"cannot resume from {path}: settings differ:\n  " + "\n  ".join(problems))
        load_path, _ = self.engine.load_checkpoint(str(path / "deepspeed"), tag="state")
        if load_path is None:
            raise ValueError(f"{path}/deepspeed: DeepSpeed found no engine state to load")
        self.step_fn.stream.load_state_dict(saved["data"])
        self.step_fn.load_extra(path)  # stage state beyond the engine (GRPO: the reference model)
        _set_rng_state(torch.load(path / "rng" / f"rank-{self.dist.rank:05d}.pt", weights_only=False))
        self.state = TrainState(
            step=saved["step"], tokens=saved["tokens"], history=saved["history"], run_id=saved.get("run_id")
        )
        self.last_checkpoint = str(path)

    # ----------------------------------------------------------------------------- train
    def _micro_step(self, micro: int) -> dict[str, float]:
        stream = self.step_fn.stream
        batch = stream.next_batch()
        ctx = StepContext(
            step=self.state.step,
            progress=stream.batch_progress,
            generator=step_generator(self.seed, self.dist.device, self.dist.rank, self.state.step, micro),
            shared_generator=step_generator(self.seed, self.dist.device, _SHARED_SALT, self.state.step),
        )
        with torch.autocast(
            self.dist.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16-mixed"
        ):
            loss, stats = self.step_fn.loss(self.engine, batch, ctx)
        self.engine.backward(loss)
        if self.cfg.zero_stage == 0 and self.engine.is_gradient_accumulation_boundary():
            # DeepSpeed reports the norm only under ZeRO; without it (zero_stage 0) we take it here,
            # from the accumulated and all-reduced gradients, before the engine clips them
            self._measured_grad_norm = _grad_norm(self.model)
        self.engine.step()
        return stats

    def _optimizer_step(self) -> dict[str, float]:
        """One optimizer step (``grad_accum_steps`` micro-batches); returns its metrics for this rank."""
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        micro_stats = [self._micro_step(m) for m in range(self.cfg.grad_accum_steps)]
        if self.dist.device.type == "cuda":
            torch.cuda.synchronize(self.dist.device)
        elapsed = time.perf_counter() - start
        metrics = {k: float(np.mean([s[k] for s in micro_stats])) for k in micro_stats[0]}
        tokens = sum(s["tokens"] for s in micro_stats) * self.dist.world_size
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is None:
            grad_norm = self._measured_grad_norm
        metrics.update(
            lr=lr,
            grad_norm=float(grad_norm) if grad_norm is not None else float("nan"),
            step_time=elapsed,
            tokens_per_sec=tokens / elapsed,
            tokens=tokens,
        )
        return metrics

    def train(self) -> TrainOutcome:
        """Run optimizer steps until ``total_steps``, logging and checkpointing on the way."""
        from tqdm.auto import tqdm

        self.engine.train()
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc=self.step_fn.name,
            disable=not self.dist.is_main,
            dynamic_ncols=True,
        )
        window: list[dict[str, float]] = []
        last: dict[str, float] = {}
        while self.state.step < self.total_steps:
            metrics = self._optimizer_step()
            self.state.step += 1
            self.state.tokens += int(metrics["tokens"])
            window.append(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
            at_end = self.state.step == self.total_steps
            if self.state.step % self.cfg.log_every_steps == 0 or at_end:
                last = self._log(window)
                window = []
            if self.state.step % self.cfg.save_every_steps == 0 or at_end:
                self.save_checkpoint()
        bar.close()
        return TrainOutcome(
            self.state.step, self.state.tokens, last, self.last_checkpoint, self.state.history
        )

    def _log(self, window: list[dict[str, float]]) -> dict[str, float]:
        local = {k: float(np.nanmean([m[k] for m in window])) for k in window[0]}
        merged = distributed.mean_across_ranks(local, self.dist.device)
        # throughput and time are job-wide already (tokens counted for all ranks); memory is per rank
        merged.update(tokens_per_sec=local["tokens_per_sec"], step_time=local["step_time"])
        merged["peak_memory_mb"] = peak_memory_mb(self.dist.device)
        merged["epoch"] = self.step_fn.stream.progress
        if self.dist.is_main:
            self.state.history.append({"step": float(self.state.step), **merged})
            if self.log_fn is not None:
                self.log_fn(merged, self.state.step)
        return merged

    # ----------------------------------------------------------------------------- checkpoints
    def _save_model(self, uri: str) -> None:
        """HF-format weights on rank 0 (gathered from all ranks under ZeRO-3)."""
        if self.cfg.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
                if self.dist.is_main:
                    save_model(self.model, self.tokenizer, uri)
        elif self.dist.is_main:
            save_model(self.model, self.tokenizer, uri)

    def save_checkpoint(self) -> str:
        """Write the complete training state for the current step atomically; returns its URI."""
        step = self.state.step
        tmp = ckpt.tmp_dir(self.local_root, step)
        if self.dist.is_main and tmp.exists():
            import shutil

            shutil.rmtree(tmp)  # leftovers of a save that was killed at this same step
        distributed.barrier()
        self.engine.save_checkpoint(str(tmp / "deepspeed"), tag="state", save_latest=False)
        (tmp / "rng").mkdir(parents=True, exist_ok=True)
        torch.save(_rng_state(), tmp / "rng" / f"rank-{self.dist.rank:05d}.pt")
        self.step_fn.save_extra(tmp, self.dist.is_main)
        self._save_model(str(tmp / "model"))
        uri = None
        distributed.barrier()
        if self.dist.is_main:
            state = {
                "step": step,
                "tokens": self.state.tokens,
                "history": self.state.history,
                "run_id": self.state.run_id,
                "data": self.step_fn.stream.state_dict(),
                "guard": self.guard,
            }
            (tmp / ckpt.TRAINER_STATE).write_text(json.dumps(state, indent=1))
            (tmp / "config.yaml").write_text(self.config_yaml)
            uri = ckpt.seal_and_publish(self.local_root, step, self.out_uri)
            ckpt.apply_retention(self.local_root, self.cfg.keep_last)
        self.last_checkpoint = distributed.broadcast_object(uri)
        return self.last_checkpoint

    def save_final(self, uri: str) -> None:
        """The stage's output model (``<out>/final``) in HF format via ``save_model``."""
        self._save_model(uri)
        distributed.barrier()

    def cleanup(self) -> None:
        self.engine = None
