"""Stage 4, coupled-GRPO (paper §2.2-2.3): rollouts, rewards through the sandbox, advantages,
log-prob estimators, the loss, and the stage plug-in the shared training loop runs
(``diffucoder train --stage grpo``; assembled in :mod:`diffucoder.rl.stage`).

Its public names, listed here, resolve on first use (``diffucoder.lazy``).
"""

from diffucoder.lazy import by_module, lazy_exports

_EXPORTS = by_module(
    __name__,
    {
        "config": ("GRPOConfig", "RolloutConfig"),
        "stage": ("build_grpo_step",),
        "trainer": ("GRPOStep",),
        "rewards": (
            "RewardBatch",
            "RewardFunction",
            "SandboxReward",
            "code_rewards",
            "format_reward",
            "score_completions",
        ),
        "advantages": ("group_advantages",),
        "estimators": ("estimate_logps",),
        "loss": ("grpo_loss",),
        "rollout": ("Problem", "RolloutBatch", "generate_rollouts"),
        "data": ("ProblemSource", "load_problems"),
    },
)
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
