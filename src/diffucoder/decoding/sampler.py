"""``diffusion_generate``: Dream's masked-diffusion sampler plus Fast-dLLM options (arXiv 2505.22618).

The completion starts fully masked. Each step runs the model once, picks a token for every masked
position of the current block, and commits some of them; a committed token is never re-masked.

- ``origin``: each masked position commits with probability ``1 - t_{i+1}/t_i`` (1 at the last step).
- confidence algs: the ``k_i`` most confident positions commit, ``k_i`` from Dream's floor schedule
  (:mod:`diffucoder.decoding.schedule`); with ``alg_temp > 0`` the positions are sampled instead.

Fast decoding (``cfg.fast.enabled``) changes three things, each optional:

- blocks: the completion is decoded in left-to-right blocks, each with ``steps / n_blocks`` steps
  and its own schedule; positions right of the block wait.
- threshold tau: on top of the schedule's ``k_i``, every position whose token has probability
  >= tau under the model (softmax of the raw logits, before temperature and top-p: Fast-dLLM's
  confidence; :func:`~diffucoder.decoding.sampling.model_probability`) commits, and at least one
  always does; a block ends as soon as it has no masks, which is
  where the speed comes from. With tau = 1.0 (nothing extra passes) and a schedule that never asks
  for 0 (steps <= L / 2), this is exactly the plain sampler.
- KV cache: see :mod:`diffucoder.decoding.forward`.

One deliberate difference from Dream: the mask token is never chosen as a prediction (its logit is
suppressed), so the output cannot contain a mask token even from an untrained model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffucoder.decoding.config import DecodingConfig
from diffucoder.decoding.forward import block_logits, make_hidden_source
from diffucoder.decoding.layout import Canvas, make_canvas
from diffucoder.decoding.sampling import choose_tokens, model_probability
from diffucoder.decoding.schedule import num_to_unmask, time_grid, transfer_ratio
from diffucoder.model import DiffusionLM


@dataclass
class GenerationOutput:
    """Result of :func:`diffusion_generate`.

    Attributes:
        sequences: (B, P + L) the left-padded prompts followed by the completions.
        trace: (B, L) long, the 0-based step at which each completion position was unmasked
            (steps count model forwards across all blocks); None unless ``return_trace``.
        forward_passes: model forwards run (equals ``steps`` for the plain sampler).
    """

    sequences: torch.Tensor
    trace: torch.Tensor | None
    forward_passes: int


def _select_top(
    confidence: torch.Tensor, counts: torch.Tensor, alg_temp: float | None, generator
) -> torch.Tensor:
    """(B, W) bool: per row the ``counts[b]`` positions to commit, by confidence.

    ``confidence`` is -inf where a position may not commit. Ties go to the leftmost position (a
    stable sort), so the choice does not depend on the batch a prompt is decoded in.
    """
    selected = torch.zeros_like(confidence, dtype=torch.bool)
    if alg_temp:
        weights = torch.softmax(confidence.float() / alg_temp, dim=-1)
        for row, count in enumerate(counts.tolist()):
            if count > 0:
                picks = torch.multinomial(weights[row], count, replacement=False, generator=generator)
                selected[row, picks] = True
        return selected
    order = torch.sort(confidence, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order)
    )
    return ranks < counts[:, None]


def _step(
    block: torch.Tensor,
    hidden: torch.Tensor,
    rows: torch.Tensor,
    model: DiffusionLM,
    grid: torch.Tensor,
    step: int,
    cfg: DecodingConfig,
    mask_id: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One denoising step on a block, in place. Returns (B, W) bool of the positions committed.

    Args:
        block: (B, W) token ids of the current block (a view into the canvas; updated in place).
        hidden: (R, W, H) final hidden states predicting those positions in the batch rows
            ``rows`` (every row with a masked position, ascending); the LM head runs on the masked
            positions only (a committed position's logits are never read).
        grid: the block's time grid; ``step`` indexes it.
    """
    masked = block == mask_id
    logits = block_logits(model, hidden[masked[rows]]).float()  # (N, V), in the order of block[masked]
    logits[:, mask_id] = torch.finfo(logits.dtype).min  # never predict the mask token itself
    last = step == len(grid) - 2
    sample = dict(
        temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, alg=cfg.alg, generator=generator
    )

    if cfg.alg == "origin":
        p_commit = 1.0 if last else float(transfer_ratio(grid, step))
        draw = torch.rand(logits.shape[0], generator=generator, device=logits.device) < p_commit
        chosen = torch.full((logits.shape[0],), mask_id, dtype=block.dtype, device=block.device)
        if draw.any():
            chosen[draw] = choose_tokens(logits[draw], **sample).tokens.to(block.dtype)
        commit = masked.clone()
        commit[masked] = draw
        block[commit] = chosen[draw]
        return commit

    choice = choose_tokens(logits, **sample)
    confidence = torch.full(block.shape, float("-inf"), device=block.device)
    confidence[masked] = choice.confidence
    counts = num_to_unmask(masked.sum(dim=1), grid, step)
    threshold = cfg.threshold
    if threshold is not None:
        counts = torch.where(masked.any(dim=1), counts.clamp(min=1), counts)  # always progress
    commit = _select_top(confidence, counts, cfg.alg_temp, generator)
    if threshold is not None:
        probability = torch.zeros(block.shape, device=block.device)
        probability[masked] = model_probability(logits, choice.tokens)
        commit |= masked & (probability >= threshold)
    tokens = block.clone()
    tokens[masked] = choice.tokens.to(block.dtype)
    block[commit] = tokens[commit]
    return commit


def _check_inputs(model: DiffusionLM, canvas: Canvas) -> None:
    if (canvas.x[:, : canvas.prompt_len][canvas.valid[:, : canvas.prompt_len]] == model.mask_token_id).any():
        raise ValueError(
            f"a prompt contains the mask token (id {model.mask_token_id}); the sampler would try to fill it in"
        )


@torch.no_grad()
def diffusion_generate(
    model: DiffusionLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cfg: DecodingConfig,
    generator: torch.Generator | None = None,
    return_trace: bool = False,
) -> GenerationOutput:
    """Denoise ``cfg.max_new_tokens`` masked positions after each (left-padded) prompt.

    Args:
        model: the diffusion LM (its mode is left as is; no gradients are kept).
        input_ids: (B, P) prompt ids, left-padded.
        attention_mask: (B, P) 1 = real token, 0 = padding; None when nothing is padded.
        cfg: the ``decoding`` config section.
        generator: RNG for token and position sampling (on the model's device); None uses the
            global RNG. Pass one seeded per call for reproducible rollouts.
        return_trace: also return the step at which each completion position was unmasked.

    Returns:
        GenerationOutput with (B, P + L) sequences, no mask token among them.

    Raises:
        ValueError: malformed prompts or padding (the message names the rows).
    """
    mask_id = model.mask_token_id
    canvas = make_canvas(input_ids, attention_mask, cfg.max_new_tokens, mask_id)
    _check_inputs(model, canvas)
    source = make_hidden_source(model, cfg.kv_cache)
    prompt_len, gen_len = canvas.prompt_len, cfg.max_new_tokens
    block_len = cfg.block_length
    n_blocks = gen_len // block_len
    grid = time_grid(cfg.steps // n_blocks, cfg.eps)
    trace = (
        torch.full((canvas.x.shape[0], gen_len), -1, dtype=torch.long, device=canvas.x.device)
        if return_trace
        else None
    )

    forward_passes = 0
    for b in range(n_blocks):
        start = prompt_len + b * block_len
        end = start + block_len
        for step in range(len(grid) - 1):
            block = canvas.x[:, start:end]
            rows = (block == mask_id).any(dim=1).nonzero().flatten()  # the rows with work left
            if len(rows) == 0:
                break
            hidden = source(canvas, start, end, refresh=step == 0, rows=rows)
            committed = _step(block, hidden, rows, model, grid, step, cfg, mask_id, generator)
            if trace is not None:
                trace[:, start - prompt_len : end - prompt_len][committed] = forward_passes
            forward_passes += 1
    return GenerationOutput(sequences=canvas.x, trace=trace, forward_passes=forward_passes)
