"""Rewards of stage 4: scoring rollouts through the sandbox service (paper §B.1; apple/ml-diffucoder,
inherited from open-r1 ``rewards.py``).

* format: the whole completion must be optional prose without backticks, then exactly one
  ```python block, ending the string with the closing fence and one newline. If it matches, the
  block is ``ast.parse``d: 1.0 if it parses, 0.5 on a syntax error; no match (missing fence, two
  blocks, prose after the block, no final newline) is 0.
* code: the pass rate of the block over the task's test cases, computed only when format == 1.
* total = code_weight * code + format_weight * format (paper 2.0 and 0.5, ``sandbox`` section;
  max 2.5).

Infrastructure failures: :func:`code_rewards` returns ``None`` for a job the sandbox could not run
(``infra_error``). :class:`SandboxReward` scores such a completion 0 and counts it in
``infra_errors``, as it does every completion of a batch the sandbox did not answer
(:class:`~diffucoder.sandbox.client.SandboxUnavailable` after the client's retries), so a flaky
sandbox shows up in the metrics instead of crashing a training step. A sandbox that is unreachable
when the stage starts fails the stage at once (:func:`check_sandbox`).

The trainer takes any :data:`RewardFunction` (as TRL's ``GRPOTrainer(reward_funcs=...)``), so a
test or a user swaps the reward without subclassing it; :class:`SandboxReward` is the recipe's.
"""

from __future__ import annotations

import ast
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffucoder.rl.rollout import RolloutBatch
from diffucoder.sandbox.client import Job, SandboxClient, SandboxUnavailable
from diffucoder.sandbox.config import SandboxConfig

log = logging.getLogger(__name__)

# prose without ```, the ```python fence line, code without backticks, the closing fence and a newline
# at the end. Flags as in the paper's code (re.match with DOTALL|MULTILINE): under MULTILINE the final
# `$` also accepts blank lines after the fence, but never text.
FORMAT_PATTERN = re.compile(
    r"^(?:(?!```)[\s\S])*?```python\n((?:(?!```)[\s\S])*?)```\n$", re.DOTALL | re.MULTILINE
)


def extract_code(completion: str) -> str | None:
    """The code of the single ```python block, or None when the completion does not match the format."""
    match = FORMAT_PATTERN.match(completion)
    return match.group(1) if match else None


def format_reward(completion: str) -> float:
    """1.0 for a well-formed completion whose block parses, 0.5 when it does not parse, else 0."""
    code = extract_code(completion)
    if code is None:
        return 0.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for odd escapes: still valid code
            ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return 0.5
    return 1.0


def code_rewards(
    completions: list[str], tests: list[list[str]], client: SandboxClient, time_limit_s: float | None = None
) -> list[float | None]:
    """Pass rate per completion (0.0 when format != 1, None when the sandbox failed for that job)."""
    if len(completions) != len(tests):
        raise ValueError(f"{len(completions)} completions but {len(tests)} test lists")
    rewards: list[float | None] = [0.0] * len(completions)
    jobs, where = [], []
    for i, (completion, cases) in enumerate(zip(completions, tests, strict=True)):
        if format_reward(completion) == 1.0 and cases:
            jobs.append(
                Job(code=extract_code(completion) or "", tests=list(cases), time_limit_s=time_limit_s)
            )
            where.append(i)
    for i, result in zip(where, client.run_batch(jobs), strict=True):
        rewards[i] = None if result.infra_error else result.pass_rate
    return rewards


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


# What the trainer scores a round with: the round's rollouts (texts, token ids, problems) -> rewards.
RewardFunction = Callable[[RolloutBatch], RewardBatch]


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


class SandboxReward:
    """The recipe's :data:`RewardFunction`: each rollout's completion text scored against its
    problem's tests through the sandbox service, weighted by the ``sandbox`` section."""

    def __init__(self, client: SandboxClient, cfg: SandboxConfig):
        self.client = client
        self.cfg = cfg

    def __call__(self, rollouts: RolloutBatch) -> RewardBatch:
        return score_completions(rollouts.texts, [p.tests for p in rollouts.problems], self.client, self.cfg)
