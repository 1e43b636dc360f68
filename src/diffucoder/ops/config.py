"""Typed config for the ``plan`` and ``promotion`` sections. Owned by diffucoder.ops.

``plan`` holds what turns a run config into hours, money and memory: the GPU's memory and peak
FLOP/s, the model-FLOPs utilisation assumed for hours, the price of a GPU-hour (also what the
pipeline's per-stage cost uses), and the dataset sizes of stages that run by epochs (the data is
not built yet when a plan is made). ``promotion`` holds the rule that moves the registry's
``champion`` alias to a new ``candidate``.
"""

from __future__ import annotations

from pydantic import Field

from diffucoder.config_base import StrictModel

# H100 SXM: 80 GB HBM3, 989 TFLOP/s dense BF16 (NVIDIA H100 datasheet).
H100_MEMORY_GIB = 80 * 1e9 / 2**30
H100_BF16_TFLOPS = 989.0


class PlanConfig(StrictModel):
    """What the planner assumes about the hardware, the price and the data it cannot see yet."""

    gpu: str = Field("H100-SXM-80GB", description="the GPU the numbers below describe (shown in plans)")
    gpu_memory_gib: float = Field(H100_MEMORY_GIB, gt=0, description="memory per GPU (80 GB = 74.5 GiB)")
    memory_reserve_gib: float = Field(
        2.0,
        ge=0,
        description="per-GPU memory that is not the model's: CUDA context, NCCL buffers, allocator "
        "fragmentation. A plan fits when its estimate plus this stays within gpu_memory_gib",
    )
    peak_tflops: float = Field(H100_BF16_TFLOPS, gt=0, description="dense bf16 peak per GPU, TFLOP/s")
    mfu: float = Field(
        0.35,
        gt=0,
        le=1,
        description="model-FLOPs utilisation assumed for hours. An assumption until benchmarks/bench_gpu.py "
        "has measured a stage-3 and a GRPO step on the target GPU (BENCHMARKS.md `## operations`)",
    )
    mfu_source: str = Field(
        "assumption: not yet measured on a GPU (benchmarks/bench_gpu.py measures it)",
        description="where the mfu value comes from; printed with every plan",
    )
    gpu_hour_price: float = Field(
        2.5, ge=0, description="price of one GPU-hour; also prices each pipeline stage's GPU-seconds"
    )
    currency: str = "USD"
    vocab_size: int = Field(
        152_064, ge=1, description="embedding rows (Qwen2.5-Coder-7B: 152,064; the tiny tokenizer: 4,096)"
    )
    dataset: dict[str, float] = Field(
        default_factory=dict,
        description="size of a stage's data when it runs by epochs: tokens for pretrain/midtrain, "
        "samples (SFT rows / RL prompts) for instruct/grpo",
    )
    eval_gpus: int = Field(1, ge=0, description="GPUs an evaluation pod requests (cost of evaluation steps)")


class PromotionConfig(StrictModel):
    """When a ``candidate`` model replaces the ``champion`` (paired comparison on the same problems)."""

    benchmark: str = Field("tiny_heldout", description="the held-out benchmark both models are compared on")
    speed: str = Field("1x", description="decoding speed row of the evaluation grid to compare")
    temperature: float | None = Field(
        None, description="temperature row to compare; None = the lowest one evaluated"
    )
    margin: float = Field(
        0.0, ge=0, le=1, description="the candidate must beat the champion's pass@1 by more than this"
    )
    z: float = Field(
        0.0,
        ge=0,
        description="standard errors subtracted from the paired mean difference before the margin test "
        "(0 = the point estimate; 1.64 = a one-sided 95 % bound)",
    )
    min_problems: int = Field(50, ge=1, description="fewer shared problems than this refuses the comparison")
    champion_alias: str = "champion"
