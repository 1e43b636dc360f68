"""The run planner: per stage, how much data, how many steps and FLOPs, hours, GPU-hours, cost, memory.

Everything comes from the resolved RunConfig: the stage sections (batch, length, ZeRO stage,
precision), the ``model`` section (dimensions, gradient checkpointing), the ``k8s`` section (nodes
x GPUs per stage) and the ``plan`` section (GPU, MFU assumption, price, dataset sizes of stages
that run by epochs).

FLOPs (``diffucoder.train.flops``): a training token costs ``6 N + 12 L H T`` (N without the input
embedding, whose lookup is not a matmul), a forward-only token a third of that. Stage 4 per
generation round and rank: every completion is decoded with ``rollout.steps`` forward passes over
prompt + completion (an upper bound: the plain sampler at the longest prompt, every allowed redraw
of flat groups, no KV cache); the estimator runs its K copies (coupled: 3) forward for the old
policy (mu > 1) and the reference (beta > 0), and forward + backward mu times.

Hours = FLOPs / (GPUs x peak x MFU). The MFU is ``plan.mfu``, an assumption until
``benchmarks/bench_gpu.py`` has measured it on the target GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from diffucoder.config import RunConfig
from diffucoder.ops.memory import MemoryEstimate, n_params, training_memory
from diffucoder.train.config import PACKED_STAGES, STAGES
from diffucoder.train.flops import flops_per_token

GIB = 2**30


class PlanError(ValueError):
    """A stage cannot be planned (names the stage and what to set)."""


@dataclass(frozen=True)
class StagePlan:
    stage: str
    runs: bool
    data: float = 0.0  # tokens (packed stages) or samples (instruct rows, RL prompts) in one epoch
    data_unit: str = ""
    steps: int = 0
    tokens: float = 0.0  # tokens through the model with gradients
    flops: float = 0.0
    gpus: int = 0
    hours: float = 0.0
    gpu_hours: float = 0.0
    cost: float = 0.0
    zero_stage: int = 0
    precision: str = ""
    micro_batch: int = 0
    memory: MemoryEstimate | None = None
    fits: bool = True
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "memory"}
        out["memory_gib"] = self.memory.as_gib() if self.memory else None
        return out


@dataclass(frozen=True)
class Plan:
    preset: str
    gpu: str
    gpu_memory_gib: float
    memory_reserve_gib: float
    mfu: float
    mfu_source: str
    gpu_hour_price: float
    currency: str
    params: int
    stages: list[StagePlan] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, float]:
        run = [s for s in self.stages if s.runs]
        return {
            "flops": sum(s.flops for s in run),
            "hours": sum(s.hours for s in run),
            "gpu_hours": sum(s.gpu_hours for s in run),
            "cost": sum(s.cost for s in run),
        }

    def misfits(self) -> list[StagePlan]:
        return [s for s in self.stages if s.runs and not s.fits]

    def as_dict(self) -> dict[str, Any]:
        head = {k: v for k, v in asdict(self).items() if k != "stages"}
        return {**head, "stages": [s.as_dict() for s in self.stages], "totals": self.totals}


def stage_gpus(cfg: RunConfig, stage: str) -> int:
    """GPUs a stage requests on the cluster: nodes x GPUs per node (k8s section); evaluation: plan.eval_gpus."""
    if stage not in STAGES:
        return cfg.plan.eval_gpus
    return cfg.k8s.trainjob.num_nodes.get(stage, 1) * cfg.k8s.trainjob.gpus_per_node


def _epoch_size(cfg: RunConfig, stage: str) -> float | None:
    size = cfg.plan.dataset.get(stage)
    if size is None:
        return None
    if size <= 0:
        raise PlanError(
            f"stage {stage}: plan.dataset.{stage} = {size:g} gives zero optimizer steps; "
            "set the stage's data size (or max_steps), or leave the stage out of the run"
        )
    return size


def _steps(cfg: RunConfig, stage: str, world: int) -> tuple[int, float | None]:
    """(optimizer steps, epoch size in samples/prompts/rows) of a stage."""
    stage_cfg = getattr(cfg, stage)
    size = _epoch_size(cfg, stage)
    if stage_cfg.epochs is not None and size is None:
        if stage_cfg.max_steps is None:
            unit = "tokens" if stage in PACKED_STAGES else "samples"
            raise PlanError(
                f"stage {stage} runs {stage_cfg.epochs:g} epochs but the plan does not know its data size; "
                f"set plan.dataset.{stage}=<{unit}> (or {stage}.max_steps)"
            )
        return stage_cfg.max_steps, None
    rows = None if size is None else (size / stage_cfg.seq_len if stage in PACKED_STAGES else size)
    if rows is None:
        return stage_cfg.max_steps, None
    per_step = stage_cfg.micro_batch_size * stage_cfg.grad_accum_steps * world
    if stage != "grpo" and rows < per_step:
        raise PlanError(
            f"stage {stage}: {rows:g} rows are fewer than one optimizer step's {per_step} "
            f"(micro_batch_size x grad_accum_steps x {world} ranks): zero optimizer steps"
        )
    if stage == "grpo" and rows < stage_cfg.prompts_per_round * world:
        raise PlanError(
            f"stage grpo: {rows:g} prompts are fewer than one generation round's "
            f"{stage_cfg.prompts_per_round * world}: zero optimizer steps"
        )
    return stage_cfg.total_steps(int(rows), world), size


def _grpo_flops(cfg: RunConfig, n: int, steps: int, world: int) -> tuple[float, float, int, int]:
    """(FLOPs, training tokens, estimator rows per micro-batch, sequence length) of stage 4."""
    g, m = cfg.grpo, cfg.model
    seq = g.rollout.max_prompt_length + g.rollout.max_completion_length
    copies = 1 if g.estimator == "full_mask" else 1 + 2 * g.coupled_pairs
    completions = g.micro_batch_size * g.grad_accum_steps  # per rank and round
    rounds = steps / g.num_iterations
    decode_steps = g.rollout.steps or g.rollout.max_completion_length
    train_tok = flops_per_token(n, m.num_hidden_layers, m.hidden_size, seq)
    fwd_tok = train_tok / 3
    rollout = completions * (1 + g.redraw_flat_groups) * decode_steps * seq
    estimate = completions * copies * seq * ((g.num_iterations > 1) + (g.beta > 0))
    train = completions * copies * seq * g.num_iterations
    flops = world * rounds * ((rollout + estimate) * fwd_tok + train * train_tok)
    return flops, world * rounds * train, copies * g.micro_batch_size, seq


def plan_stage(cfg: RunConfig, stage: str) -> StagePlan:
    stage_cfg = getattr(cfg, stage)
    gpus = stage_gpus(cfg, stage)
    world = max(gpus, 1)
    steps, size = _steps(cfg, stage, world)
    m, vocab = cfg.model, cfg.plan.vocab_size
    n_matmul = n_params(m, vocab) - vocab * m.hidden_size  # the input embedding is a lookup
    if stage == "grpo":
        flops, tokens, rows, seq = _grpo_flops(cfg, n_matmul, steps, world)
        scored = rows * cfg.grpo.rollout.max_completion_length
    else:
        seq = stage_cfg.seq_len
        tokens = float(steps) * stage_cfg.micro_batch_size * stage_cfg.grad_accum_steps * world * seq
        flops = tokens * flops_per_token(n_matmul, m.num_hidden_layers, m.hidden_size, seq)
        rows, scored = stage_cfg.micro_batch_size, stage_cfg.micro_batch_size * seq
    # plans are for plan.gpu, a GPU with bfloat16, where the trainer resolves auto to bf16
    # (diffucoder.train.precision.choose_precision; not imported here: it loads torch)
    precision = "bf16" if stage_cfg.precision == "auto" else stage_cfg.precision
    memory = training_memory(
        m,
        vocab_size=vocab,
        zero_stage=stage_cfg.zero_stage,
        precision=precision,
        ranks=world,
        rows=rows,
        seq_len=seq,
        scored_positions=scored,
        reference_copy=stage == "grpo" and cfg.grpo.beta > 0,
    )
    p = cfg.plan
    hours = flops / (world * p.peak_tflops * 1e12 * p.mfu) / 3600
    gpu_hours = hours * gpus
    fits = memory.total / GIB + p.memory_reserve_gib <= p.gpu_memory_gib
    return StagePlan(
        stage=stage,
        runs=True,
        data=size or 0.0,
        data_unit=("tokens" if stage in PACKED_STAGES else "samples") if size else "",
        steps=steps,
        tokens=tokens,
        flops=flops,
        gpus=gpus,
        hours=hours,
        gpu_hours=gpu_hours,
        cost=gpu_hours * p.gpu_hour_price,
        zero_stage=stage_cfg.zero_stage,
        precision=precision,
        micro_batch=stage_cfg.micro_batch_size,
        memory=memory,
        fits=fits,
    )


def stages_run(start_from: str = "pretrain", run_grpo: bool = True) -> tuple[str, ...]:
    """The stages a pipeline run trains (pipeline parameters ``start_from`` and ``run_grpo``)."""
    if start_from not in STAGES:
        raise PlanError(f"start_from {start_from!r}: expected one of {', '.join(STAGES)}")
    chosen = STAGES[STAGES.index(start_from) :]
    return chosen if run_grpo or start_from == "grpo" else tuple(s for s in chosen if s != "grpo")


def make_plan(cfg: RunConfig, *, start_from: str = "pretrain", run_grpo: bool = True) -> Plan:
    """The plan of a whole run; stages the run skips are listed with zero cost."""
    chosen = stages_run(start_from, run_grpo)
    stages = [
        plan_stage(cfg, s) if s in chosen else StagePlan(stage=s, runs=False, note="not run") for s in STAGES
    ]
    p = cfg.plan
    return Plan(
        preset=cfg.preset,
        gpu=p.gpu,
        gpu_memory_gib=p.gpu_memory_gib,
        memory_reserve_gib=p.memory_reserve_gib,
        mfu=p.mfu,
        mfu_source=p.mfu_source,
        gpu_hour_price=p.gpu_hour_price,
        currency=p.currency,
        params=n_params(cfg.model, p.vocab_size),
        stages=stages,
    )


def misfit_message(plan: Plan) -> str:
    """Why a plan does not fit, naming each stage and its numbers (empty when it fits)."""
    lines = []
    for s in plan.misfits():
        mem = s.memory.as_gib()
        lines.append(
            f"stage {s.stage}: {mem['total']:.1f} GiB per GPU (weights {mem['weights']:.1f}, gradients "
            f"{mem['gradients']:.1f}, optimizer {mem['optimizer']:.1f}, buffers {mem['buffers']:.1f}, "
            f"reference {mem['reference']:.1f}, activations {mem['activations']:.1f}, logits {mem['logits']:.1f}) "
            f"+ {plan.memory_reserve_gib:.1f} reserved > {plan.gpu_memory_gib:.1f} GiB on a {plan.gpu} "
            f"(ZeRO-{s.zero_stage}, {s.precision}, micro-batch {s.micro_batch}, {s.gpus} GPUs)"
        )
    return "\n".join(lines)
