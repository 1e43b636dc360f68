"""Reward functions of the DiffuCoder recipe (apple/ml-diffucoder, inherited from open-r1).

* format: the whole completion must be optional prose without backticks, then exactly one
  ```python block, ending the string with the closing fence and one newline. If it matches, the
  block is ``ast.parse``d: 1.0 if it parses, 0.5 on a syntax error; no match (missing fence, two
  blocks, prose after the block, no final newline) is 0.
* code: the pass rate of the block over the task's test cases, computed only when format == 1.
* total = code_weight * code + format_weight * format (paper: 2.0 and 0.5; max 2.5).

Unlike the paper's code (where a sandbox failure silently scores 0), a job the sandbox could not
run gives ``None``, which the GRPO trainer leaves out of the group baseline.
"""

from __future__ import annotations

import ast
import re
import warnings

from diffucoder.sandbox.client import Job, SandboxClient

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


def code_reward(completion: str, tests: list[str], client: SandboxClient) -> float | None:
    return code_rewards([completion], [tests], client)[0]


def total_reward(
    code: float | None, fmt: float, code_weight: float = 2.0, format_weight: float = 0.5
) -> float | None:
    """``code_weight * code + format_weight * format``; None when the code reward is unknown (infra error)."""
    if code is None:
        return None
    return code_weight * code + format_weight * fmt
