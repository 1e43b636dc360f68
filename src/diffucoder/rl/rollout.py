"""Rollouts: chat prompts, G diffusion-sampled completions per prompt, completion masks (apple/ml-diffucoder
``coupled_grpo.py``).

- Prompt: the tokenizer's chat template (optional system turn, the question as the user turn, the
  generation prompt), tokenized without extra special tokens and **left-truncated** to the last
  ``max_prompt_length`` tokens, then left-padded into one batch.
- Sampling: Dream's ``diffusion_generate`` with the paper's rollout settings (entropy order,
  temperature 1.2, top-p 0.95, steps = completion length) or the decoding section's fast settings;
  traces are kept for AR-ness.
- Completion mask: positions up to and **including** the first ``<|im_end|>``; all positions when
  there is none. Trailing pads are outside the loss.
- Text for the rewards: the whole completion decoded with special tokens dropped, as the released
  code does; the format reward therefore sees the newline the chat template puts after
  ``<|im_end|>``, and anything the model wrote after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import ValidationError

from diffucoder.data.tokenizer import IM_END
from diffucoder.decoding import DecodingConfig, diffusion_generate
from diffucoder.rl.config import RolloutConfig


@dataclass(frozen=True)
class Problem:
    """One RL problem (a row of the stage-4 set)."""

    id: str
    question: str
    tests: list[str]
    entry_point: str | None = None


@dataclass
class RolloutBatch:
    """The G completions of each prompt of one generation round, for one rank.

    Attributes:
        sequences: [N, P + L] long, left-padded prompts then completions, N = prompts x G (groups consecutive).
        prompt_valid: [N, P] bool, real prompt tokens.
        completion_mask: [N, L] bool, scored completion tokens (through the first <|im_end|>).
        trace: [N, L] long, decode step of each completion position.
        texts: N completion texts (special tokens dropped) for the rewards.
        problems: N problems (each repeated G times).
        forward_passes: model forwards the sampler ran.
    """

    sequences: torch.Tensor
    prompt_valid: torch.Tensor
    completion_mask: torch.Tensor
    trace: torch.Tensor
    texts: list[str]
    problems: list[Problem]
    forward_passes: int

    @property
    def prompt_len(self) -> int:
        return self.prompt_valid.shape[1]


def user_message(problem: Problem, append_first_test: bool) -> str:
    """The user turn: the question, plus its first test case when it has no code fence (released recipe)."""
    if append_first_test and "```" not in problem.question and problem.tests:
        return f"{problem.question}\nTest cases: {problem.tests[0]}"
    return problem.question


def encode_prompts(
    problems: list[Problem], tokenizer, cfg: RolloutConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chat-template, left-truncate and left-pad prompts -> (ids [B, P], attention [B, P])."""
    rows = []
    for problem in problems:
        messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
        messages.append({"role": "user", "content": user_message(problem, cfg.append_first_test)})
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append(ids[-cfg.max_prompt_length :])  # keep the end: the generation prompt must survive
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention[i, width - len(row) :] = 1
    return ids, attention


def completion_mask(completions: torch.Tensor, im_end_id: int) -> torch.Tensor:
    """[N, L] bool: True up to and including the first ``im_end_id`` of each row (all True without one)."""
    is_end = completions == im_end_id
    length = completions.shape[1]
    first = torch.where(
        is_end.any(dim=1),
        is_end.float().argmax(dim=1),
        torch.full_like(is_end[:, 0], length, dtype=torch.long),
    )
    return torch.arange(length, device=completions.device)[None, :] <= first[:, None]


def rollout_decoding(cfg: RolloutConfig, decoding: DecodingConfig) -> DecodingConfig:
    """The sampler settings of rollouts: the decoding section with the rollout's length, temperature and order.

    Re-validated, so a rollout length that the fast decoder's blocks do not divide fails here with
    both sections named, not as an arithmetic error inside the sampler.
    """
    update = {
        "max_new_tokens": cfg.max_completion_length,
        "steps": cfg.steps or cfg.max_completion_length,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "alg": cfg.alg,
        "fast": {**decoding.fast.model_dump(), "enabled": cfg.fast},
    }
    try:
        return DecodingConfig.model_validate({**decoding.model_dump(), **update})
    except ValidationError as err:
        raise ValueError(
            f"grpo.rollout (max_completion_length={cfg.max_completion_length}, steps={update['steps']}, "
            f"fast={cfg.fast}) does not fit the decoding section: {err.errors()[0]['msg']}"
        ) from err


def take_rollouts(batch: RolloutBatch, rows: list[int]) -> RolloutBatch:
    """The given rows of a batch (same prompt width; ``forward_passes`` stays the batch's total)."""
    index = torch.tensor(rows, dtype=torch.long)
    return RolloutBatch(
        sequences=batch.sequences[index],
        prompt_valid=batch.prompt_valid[index],
        completion_mask=batch.completion_mask[index],
        trace=batch.trace[index],
        texts=[batch.texts[i] for i in rows],
        problems=[batch.problems[i] for i in rows],
        forward_passes=batch.forward_passes,
    )


def concat_rollouts(batches: list[RolloutBatch], pad: int) -> RolloutBatch:
    """Rows of several batches as one, each prompt re-left-padded to the widest real prompt."""
    length = batches[0].completion_mask.shape[1]
    rows = []
    for batch in batches:
        width = batch.prompt_valid.shape[1]
        for i in range(len(batch.texts)):
            prompt = batch.sequences[i, :width][batch.prompt_valid[i]]
            rows.append(torch.cat([prompt, batch.sequences[i, width:]])[None])
    width = max(row.shape[1] for row in rows) - length
    sequences, valid = _left_pad(rows, width + length, pad)
    return RolloutBatch(
        sequences=sequences,
        prompt_valid=valid[:, :width],
        completion_mask=torch.cat([b.completion_mask for b in batches]),
        trace=torch.cat([b.trace for b in batches]),
        texts=[t for b in batches for t in b.texts],
        problems=[p for b in batches for p in b.problems],
        forward_passes=sum(b.forward_passes for b in batches),
    )


def _left_pad(rows: list[torch.Tensor], width: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad 2-D blocks to ``width`` columns -> (ids, valid)."""
    ids, valid = [], []
    for block in rows:
        extra = width - block.shape[1]
        ids.append(
            torch.cat(
                [torch.full((block.shape[0], extra), pad, dtype=block.dtype, device=block.device), block], 1
            )
        )
        v = torch.ones(block.shape[0], width, dtype=torch.bool, device=block.device)
        v[:, :extra] = False
        valid.append(v)
    return torch.cat(ids), torch.cat(valid)


@torch.no_grad()
def generate_rollouts(
    model,
    tokenizer,
    problems: list[Problem],
    group_size: int,
    cfg: RolloutConfig,
    decoding: DecodingConfig,
    generator: torch.Generator,
) -> RolloutBatch:
    """Sample ``group_size`` completions for each problem.

    Each group is decoded as one unpadded batch (its G prompts are identical), which on CPU is
    about twice as fast as one left-padded batch of all prompts (BENCHMARKS.md, evaluation); the
    groups are then left-padded together. Scoring later uses real-token positions and hides pads,
    so a row scores exactly as it was decoded.

    Args:
        model: the current policy (a DiffusionLM; under ZeRO-3 its parameters are gathered per forward).
        generator: the rollout RNG on the model's device (seeded per round by the caller).
    """
    sampler = rollout_decoding(cfg, decoding)
    device = generator.device
    prompts, outputs, traces, passes = [], [], [], 0
    for problem in problems:
        ids, _ = encode_prompts([problem] * group_size, tokenizer, cfg)
        out = diffusion_generate(model, ids.to(device), None, sampler, generator=generator, return_trace=True)
        prompts.append(ids.shape[1])
        outputs.append(out.sequences)
        traces.append(out.trace)
        passes += out.forward_passes
    width = max(prompts)
    sequences, valid = _left_pad(outputs, width + cfg.max_completion_length, tokenizer.pad_token_id)
    completions = sequences[:, width:]
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    return RolloutBatch(
        sequences=sequences,
        prompt_valid=valid[:, :width],
        completion_mask=completion_mask(completions, im_end),
        trace=torch.cat(traces),
        texts=tokenizer.batch_decode(completions.tolist(), skip_special_tokens=True),
        problems=[p for p in problems for _ in range(group_size)],
        forward_passes=passes,
    )
