"""Stages 1-3 (pretrain, mid-train, instruct; paper §3) and the one DeepSpeed loop every stage,
GRPO included, runs in: :func:`diffucoder.train.run.run` trains one stage end to end.

Its public names, listed here, resolve on first use (``diffucoder.lazy``).
"""

from diffucoder.lazy import by_module, lazy_exports

_EXPORTS = by_module(
    __name__,
    {
        "config": ("PACKED_STAGES", "RL_STAGES", "SFT_STAGES", "STAGES", "TrainStageConfig"),
        "run": ("TrainResult",),
        "loop": ("Trainer",),
        "stages": ("StageStep", "StepContext"),
        "launch": ("torchrun_command", "train_args"),
    },
)
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
