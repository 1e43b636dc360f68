"""Entry point of stages 1-4: ``run(cfg, stage, data, out, init, resume) -> TrainResult``.

The CLI (``diffucoder train``), torchrun workers (``python -m diffucoder.train.worker``, see
:mod:`diffucoder.train.launch`) and pipeline components all call this one function. It resolves
the model and data, hands a :class:`~diffucoder.train.stages.StageStep` to the shared
:class:`~diffucoder.train.loop.Trainer`, tracks the stage as one MLflow child run, and writes the
output layout of docs/interfaces.md::

    <out>/checkpoints/step-NNNNNN/   (see diffucoder.train.checkpoint)
    <out>/final/                      HF model dir via save_model (sealed)
    <out>/config.yaml                 the resolved RunConfig
    <out>/result.json                 steps, tokens, final metrics, URIs, MLflow run id
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from diffucoder import storage
from diffucoder.config import RunConfig
from diffucoder.train import distributed
from diffucoder.train.batches import BatchStream
from diffucoder.train.checkpoint import discard_staging, local_root_for
from diffucoder.train.config import PACKED_STAGES, RL_STAGES, STAGES
from diffucoder.train.loop import Trainer
from diffucoder.train.packed_data import META_FILE, PackedShards
from diffucoder.train.precision import precision_for
from diffucoder.train.sft_data import SFTExamples
from diffucoder.train.stages import PackedDiffusionStep, SFTDiffusionStep, StageStep


@dataclass(frozen=True)
class TrainResult:
    """What ``result.json`` holds."""

    stage: str
    steps: int
    tokens: int
    final_model_uri: str
    checkpoint_uri: str | None
    metrics: dict[str, float]
    run_id: str | None
    world_size: int
    wall_s: float
    precision: str
    precision_reason: str


def _tokenizer_uri(stage: str, data_uri: str) -> str:
    """Where a from-scratch model's tokenizer comes from: the packed data's meta.json."""
    if stage in PACKED_STAGES:
        meta_uri = storage.join(data_uri, META_FILE)
        if storage.exists(meta_uri):
            tok = json.loads(storage.read_text(meta_uri)).get("tokenizer")
            if tok:
                return tok
    raise ValueError(
        f"stage {stage}: no model to start from; pass --init MODEL_URI (the previous stage's final/), "
        "set model.base_model_uri, or use packed data whose meta.json names its tokenizer"
    )


def load_start_model(cfg: RunConfig, stage: str, data_uri: str, init: str | None):
    """The model the stage starts from: ``--init`` (a diffusion LM dir), else a built/converted one.

    Converting ``model.base_model_uri`` appends ``model.tokens`` to the base tokenizer first.
    Weight init of a from-scratch model draws from the global RNG, seeded identically on all ranks.
    """
    from diffucoder.data.tokenizer import add_diffusion_tokens, load_tokenizer
    from diffucoder.model import build_model, enable_gradient_checkpointing, load_model

    if init:
        if not storage.is_s3(init) and not Path(init).is_dir():
            raise FileNotFoundError(
                f"--init {init}: no such model directory (expected a previous stage's final/)"
            )
        model, tokenizer = load_model(init, attn_implementation=cfg.model.attn_implementation)
        if cfg.model.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        return model, tokenizer
    if cfg.model.base_model_uri:
        tokenizer = load_tokenizer(cfg.model.base_model_uri)
        tokens = cfg.model.tokens
        add_diffusion_tokens(tokenizer, mask=tokens.mask, pad=tokens.pad, bos=tokens.bos)
    else:
        tokenizer = load_tokenizer(_tokenizer_uri(stage, data_uri))
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, tokenizer), tokenizer


def build_step(
    cfg: RunConfig,
    stage: str,
    data_uri: str,
    *,
    model,
    tokenizer,
    dist,
    cache_dir: Path,
    precision: str = "fp32",
    resources: contextlib.ExitStack | None = None,
) -> StageStep:
    """The stage plug-in: its data stream and its loss.

    ``resources`` holds what a stage starts for its duration (stage 4: a local sandbox server).
    """
    if stage in RL_STAGES:
        from diffucoder.rl.stage import build_grpo_step

        return build_grpo_step(
            cfg,
            data_uri,
            model=model,
            tokenizer=tokenizer,
            dist=dist,
            precision=precision,
            resources=resources or contextlib.ExitStack(),
        )
    stage_cfg = getattr(cfg, stage)
    max_positions = model.config.max_position_embeddings
    if stage_cfg.seq_len > max_positions:
        raise ValueError(
            f"{stage}.seq_len={stage_cfg.seq_len} is longer than the model's max_position_embeddings={max_positions}"
        )
    if stage in PACKED_STAGES:
        source = PackedShards(data_uri, stage_cfg.seq_len, model.config.vocab_size, cache_dir)
    else:
        source = SFTExamples(data_uri, tokenizer, stage_cfg.seq_len)
    stream = BatchStream(source, stage_cfg.micro_batch_size, dist.rank, dist.world_size, cfg.seed)
    if stage in PACKED_STAGES:
        return PackedDiffusionStep(stage, stream, stage_cfg, model.mask_token_id, model.pad_token_id)
    return SFTDiffusionStep(stage, stream, stage_cfg, model.mask_token_id)


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"--stage {stage!r}: expected one of {', '.join(STAGES)}")


def run(
    cfg: RunConfig, stage: str, data_uri: str, out_uri: str, init: str | None = None, resume: str = "auto"
) -> TrainResult:
    """Train one stage end to end (any number of ranks; a plain process is a world of one).

    Raises:
        ValueError / FileNotFoundError: bad stage, data, init model or resume checkpoint, naming the item.
        diffucoder.storage.StorageError: the object store is unreachable or refuses (naming the URL).
    """
    from diffucoder import tracking
    from diffucoder.heap import retain_freed_memory
    from diffucoder.plots import loss_figure

    _check_stage(stage)
    retain_freed_memory()  # before the first step's allocations (see diffucoder.heap)
    started = time.time()
    storage.configure(cfg.storage)
    stage_cfg = getattr(cfg, stage)
    model, tokenizer = load_start_model(cfg, stage, data_uri, init)  # bad --init fails before any rendezvous
    dist = distributed.init_distributed(cfg.device)
    model.to(dist.device)
    local_root = local_root_for(out_uri)
    choice = precision_for(stage_cfg.precision, dist.device, mixed_supported=stage not in RL_STAGES)
    if choice.warning:
        warnings.warn(choice.warning, stacklevel=2)
    precision = choice.precision
    if dist.is_main:
        print(f"{stage}: precision {precision} ({choice.reason})", flush=True)
    with contextlib.ExitStack() as resources:
        step_fn = build_step(
            cfg,
            stage,
            data_uri,
            model=model,
            tokenizer=tokenizer,
            dist=dist,
            cache_dir=local_root / "data-cache",
            precision=precision,
            resources=resources,
        )
        total = stage_cfg.total_steps(step_fn.stream.usable_per_epoch, dist.world_size)
        # per-rank global RNG for anything the model draws itself (the loop's noise uses its own generators)
        torch.manual_seed(cfg.seed + dist.rank)
        trainer = Trainer(
            cfg,
            stage,
            step_fn,
            model,
            tokenizer=tokenizer,
            out_uri=out_uri,
            dist=dist,
            total_steps=total,
            precision=precision,
        )
        trainer.setup(resume)

        tracking.configure(cfg.tracking)
        parent = os.environ.get("DIFFUCODER_PARENT_RUN_ID")
        with tracking.stage_run(
            stage,
            cfg,
            parent_run_id=parent,
            resume_run_id=trainer.state.run_id,
            metric_group="grpo" if stage == "grpo" else "train",
        ) as tr:
            trainer.state.run_id = tr.run_id
            tr.log_dataset(data_uri, name=f"{stage}-data", context="training")
            tr.log_params(
                {
                    "world_size": dist.world_size,
                    "precision": precision,
                    "precision_reason": choice.reason,
                    "total_steps": total,
                    "stage": stage,
                    "data": data_uri,
                    "init": init or "",
                    "out": out_uri,
                }
            )
            trainer.log_fn = tr.log_metrics
            if dist.is_main:
                step_fn.attach_tracker(tr)  # stage 4 logs sample rollouts as text artifacts
            outcome = trainer.train()
            final_uri = storage.join(out_uri, "final")
            trainer.save_final(final_uri)
            # stage-level numbers over the whole history (stage 4: reward first vs last quarter)
            run_metrics = step_fn.summary_metrics(outcome.history)
            if dist.is_main and run_metrics:
                tr.log_metrics(run_metrics, outcome.steps)
            result = TrainResult(
                stage,
                outcome.steps,
                outcome.tokens,
                final_uri,
                outcome.checkpoint_uri,
                {**outcome.last_metrics, **run_metrics},
                tr.run_id,
                dist.world_size,
                time.time() - started,
                precision,
                choice.reason,
            )
            if dist.is_main:
                storage.write_text(storage.join(out_uri, "config.yaml"), cfg.to_yaml())
                storage.write_text(storage.join(out_uri, "result.json"), json.dumps(asdict(result), indent=1))
                tr.set_tags({"final_model_uri": final_uri, "checkpoint_uri": outcome.checkpoint_uri or ""})
                if outcome.history:
                    tr.log_figure(loss_figure(outcome.history, stage), "plots/loss.png")
                    for name, fig in step_fn.figures(outcome.history).items():
                        tr.log_figure(fig, name)
    trainer.cleanup()
    distributed.barrier()
    if dist.local_rank == 0:  # one process per node, after every rank on it is done with the dir
        discard_staging(out_uri)
    return result
