"""Generate the DeepSpeed config dict from our typed config (the one source of truth).

Nobody writes a ``ds_config.json`` by hand: batch sizes, clipping, precision and the ZeRO stage
come from :class:`~diffucoder.train.config.TrainStageConfig`, so the numbers MLflow records are the
ones DeepSpeed ran with. The optimizer and LR scheduler are handed to ``deepspeed.initialize`` as
torch objects rather than named here, because DeepSpeed's named ``AdamW`` is a fused CUDA/CPU
extension that must be compiled, while ``torch.optim.AdamW`` runs everywhere.
"""

from __future__ import annotations

from typing import Any

from diffucoder.train.config import TrainStageConfig

PRECISIONS = ("bf16", "bf16-mixed", "fp32")


def deepspeed_config(stage: TrainStageConfig, world_size: int, precision: str) -> dict[str, Any]:
    """The DeepSpeed config for one stage run on ``world_size`` ranks.

    Args:
        stage: the stage section of the RunConfig.
        world_size: number of data-parallel ranks.
        precision: ``bf16``, ``bf16-mixed`` or ``fp32`` (:mod:`diffucoder.train.precision` resolves
            ``auto``). DeepSpeed sees ``bf16-mixed`` as fp32: the training loop runs the forward under
            torch autocast itself, so weights, gradients and their all-reduce stay float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    zero: dict[str, Any] = {
        "stage": stage.zero_stage,
        "overlap_comm": False,  # overlapping needs CUDA streams; off keeps CPU/gloo runs deterministic
        "contiguous_gradients": True,
    }
    if stage.zero_stage == 3:
        # save_model needs the full weights on rank 0 at checkpoint time
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": stage.micro_batch_size,
        "gradient_accumulation_steps": stage.grad_accum_steps,
        "train_batch_size": stage.micro_batch_size * stage.grad_accum_steps * world_size,
        "gradient_clipping": stage.max_grad_norm,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,  # torch AdamW, see module docstring
        "steps_per_print": 2**31 - 1,  # our own logging does this
        "wall_clock_breakdown": False,
    }
