"""Scoring rollouts through the sandbox service (paper §B.1; open-r1 ``rewards.py``).

total = code_weight * pass_rate + format_weight * format (paper 2.0 and 0.5, ``sandbox`` section),
where the format and code rewards are :mod:`diffucoder.sandbox.rewards` (code only when format == 1).

Failures: a job the sandbox could not run (``infra_error``), or a batch it did not answer
(:class:`~diffucoder.sandbox.client.SandboxUnavailable` after the client's retries), scores 0 for
the completions concerned and is counted in ``infra_errors``, so a flaky sandbox shows up in the
metrics instead of crashing a training step. A sandbox that is unreachable when the stage starts
fails the stage at once (:func:`check_sandbox`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from diffucoder.sandbox.client import SandboxClient, SandboxUnavailable
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.rewards import code_rewards, format_reward

log = logging.getLogger(__name__)


@dataclass
class RewardBatch:
    """Rewards of N completions.

    Attributes:
        total: [N] weighted reward (the one advantages are computed from).
        code: [N] pass rate over the tests (0 when the format is not exactly 1).
        format: [N] format reward in {0, 0.5, 1}.
        infra_errors: completions whose code reward is unknown and was scored 0.
    """

    total: torch.Tensor
    code: torch.Tensor
    format: torch.Tensor
    infra_errors: int

    def metrics(self) -> dict[str, float]:
        """Per-component mean/std, pass rate (all tests pass) and format rate (format == 1)."""
        out = {}
        for name, values in (("total", self.total), ("code", self.code), ("format", self.format)):
            out[f"reward/{name}/mean"] = float(values.mean())
            out[f"reward/{name}/std"] = float(values.std()) if values.numel() > 1 else 0.0
        out["pass_rate"] = float((self.code == 1.0).float().mean())
        out["format_rate"] = float((self.format == 1.0).float().mean())
        out["reward/infra_errors"] = float(self.infra_errors)
        return out


def take_rewards(rewards: RewardBatch, rows: list[int]) -> RewardBatch:
    """The given rows (``infra_errors`` stays the batch's count)."""
    index = torch.tensor(rows, dtype=torch.long)
    return RewardBatch(rewards.total[index], rewards.code[index], rewards.format[index], rewards.infra_errors)


def concat_rewards(batches: list[RewardBatch]) -> RewardBatch:
    """Several batches' rewards as one, in order."""
    return RewardBatch(
        total=torch.cat([b.total for b in batches]),
        code=torch.cat([b.code for b in batches]),
        format=torch.cat([b.format for b in batches]),
        infra_errors=sum(b.infra_errors for b in batches),
    )


def check_sandbox(client: SandboxClient) -> None:
    """Fail fast (SandboxUnavailable naming the URL) when the sandbox does not answer /healthz."""
    client.health()


def score_completions(
    texts: list[str], tests: list[list[str]], client: SandboxClient, cfg: SandboxConfig
) -> RewardBatch:
    """Format and code rewards of each completion, combined with the configured weights."""
    fmt = [format_reward(t) for t in texts]
    try:
        code = code_rewards(texts, tests, client, time_limit_s=cfg.time_limit_s)
    except SandboxUnavailable as exc:
        log.warning(
            "sandbox unavailable for a reward batch of %d completions; scoring them 0: %s", len(texts), exc
        )
        code = [None if f == 1.0 else 0.0 for f in fmt]
    errors = sum(c is None for c in code)
    code_t = torch.tensor([0.0 if c is None else c for c in code], dtype=torch.float32)
    fmt_t = torch.tensor(fmt, dtype=torch.float32)
    total = cfg.code_reward_weight * code_t + cfg.format_reward_weight * fmt_t
    return RewardBatch(total=total, code=code_t, format=fmt_t, infra_errors=errors)
