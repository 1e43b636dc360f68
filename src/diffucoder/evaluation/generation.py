"""Batched completion generation through the decoding engine, for one point of the sampling grid.

The grid (paper §5.4, App. C.3): "1x" decodes ``gen_length`` tokens in ``gen_length`` steps (one
token per step), "2x" in half as many; each temperature is a separate point. Prompts are left-padded
and decoded ``batch_size`` at a time; the decoding engine handles the padding mask and positions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from diffucoder.decoding.config import DecodingConfig
from diffucoder.evaluation.config import EvaluationConfig


@dataclass
class Completion:
    """One decoded completion: text cut at the first stop token, and its decode order (trace)."""

    text: str
    trace: list[int] | None


def steps_for(speed: str, gen_length: int) -> int:
    """Denoising steps of a speed label: '1x' = one token per step, '2x' = two."""
    if speed == "1x":
        return gen_length
    if speed == "2x":
        return gen_length // 2
    raise ValueError(f"unknown speed {speed!r}; use '1x' or '2x'")


def decoding_config_for(
    base: DecodingConfig, ev: EvaluationConfig, speed: str, temperature: float
) -> DecodingConfig:
    """The run's decoding section with the grid point's length, steps, temperature and fast settings."""
    update = {
        "max_new_tokens": ev.gen_length,
        "steps": steps_for(speed, ev.gen_length),
        "temperature": temperature,
        "fast": ev.fast_decoding_for(base.fast).model_dump(),
    }
    # model_validate re-runs the cross-field checks (e.g. fast-decoding block sizes vs steps).
    return DecodingConfig.model_validate({**base.model_dump(), **update})


@torch.no_grad()
def generate_completions(
    model,
    tokenizer,
    prompts: list[str],
    decoding: DecodingConfig,
    *,
    batch_size: int,
    generator: torch.Generator | None,
    return_trace: bool,
    progress=None,
) -> tuple[list[Completion], float]:
    """Completions for ``prompts`` (in order) and the seconds spent decoding.

    ``progress`` (a tqdm bar, optional) is advanced by the number of prompts of each batch.
    """
    from diffucoder.decoding import diffusion_generate
    from diffucoder.decoding.postprocess import completion_length, stop_token_ids

    # Dream-style post-processing: a completion ends at the first eos / <|im_end|> / <|dlm_pad|>.
    stop_ids = stop_token_ids(tokenizer)
    device = next(model.parameters()).device
    completions: list[Completion] = []
    seconds = 0.0
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        enc = tokenizer(
            chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        )
        input_ids = enc["input_ids"].to(device)
        attention_mask = enc["attention_mask"].to(device)
        t0 = time.perf_counter()
        out = diffusion_generate(
            model, input_ids, attention_mask, decoding, generator=generator, return_trace=return_trace
        )
        seconds += time.perf_counter() - t0
        generated = out.sequences[:, input_ids.shape[1] :].tolist()
        for row, ids in enumerate(generated):
            kept = ids[: completion_length(ids, stop_ids)]
            trace = out.trace[row].tolist() if return_trace and out.trace is not None else None
            completions.append(
                Completion(text=tokenizer.decode(kept, skip_special_tokens=False), trace=trace)
            )
        if progress is not None:
            progress.update(len(chunk))
    return completions, seconds
