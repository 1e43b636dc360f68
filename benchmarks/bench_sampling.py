"""Decode time of a trained tiny model at the evaluation and the GRPO-rollout settings.

Where a CPU decode step goes on the tiny preset: the model forward is small (hidden 128), so the
per-step token choice over the 4,096-token vocabulary (top-p truncation, sampling, entropy) weighs
as much as the forward. This times whole ``diffusion_generate`` calls with the tiny preset's
settings on a trained checkpoint, and the share of that time spent in ``choose_tokens``:

- eval: one prompt at a time, 64 tokens in 64 steps, temperature 0.2, top-p 0.95, entropy order
  (the tiny preset's evaluation grid point);
- rollout: G = 8 copies of a prompt decoded together, 80 tokens in 40 steps, temperature 0.7
  (the tiny preset's GRPO rollouts).

The baseline is an older tree, run back to back with this one on the same machine:

    .venv/bin/python benchmarks/bench_sampling.py --model runs/tiny/<run>/instruct/final \
        --problems runs/tiny/data/tasks/rl/train.jsonl
    PYTHONPATH=<old checkout>/src .venv/bin/python benchmarks/bench_sampling.py ...  # same args

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import diffucoder
import diffucoder.decoding.sampler as sampler_module
from diffucoder.config import load_config
from diffucoder.decoding import diffusion_generate
from diffucoder.model.io import load_model
from diffucoder.rl.data import load_problems
from diffucoder.rl.rollout import encode_prompts, rollout_decoding


class ChooseTimer:
    """Wraps the sampler's ``choose_tokens`` to add up the seconds spent in it."""

    def __init__(self):
        self.seconds = 0.0
        self.inner = sampler_module.choose_tokens

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def time_decodes(model, batches, decoding, seed: int, timer: ChooseTimer) -> dict[str, float]:
    """Decode every batch once; seconds per batch (median) and the share spent choosing tokens."""
    generator = torch.Generator().manual_seed(seed)
    timer.seconds = 0.0
    times = []
    with torch.no_grad():
        for ids in batches:
            start = time.perf_counter()
            diffusion_generate(model, ids, None, decoding, generator=generator)
            times.append(time.perf_counter() - start)
    return {
        "median_s_per_batch": statistics.median(times),
        "total_s": sum(times),
        "choose_tokens_share": timer.seconds / sum(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained tiny checkpoint dir (stage 3 or 4)")
    parser.add_argument("--problems", required=True, help="tiny RL set JSONL (prompts to decode)")
    parser.add_argument("--count", type=int, default=16, help="prompts per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg = load_config("tiny")
    model, tokenizer = load_model(args.model)
    problems = load_problems(args.problems)[: args.count]
    timer = ChooseTimer()
    sampler_module.choose_tokens = timer

    rollout_cfg = cfg.grpo.rollout
    eval_decoding = cfg.decoding.model_copy(
        update={"max_new_tokens": 64, "steps": 64, "temperature": 0.2, "top_p": 0.95, "alg": "entropy"}
    )
    single = [encode_prompts([p], tokenizer, rollout_cfg)[0] for p in problems]
    groups = [encode_prompts([p] * cfg.grpo.num_generations, tokenizer, rollout_cfg)[0] for p in problems]
    time_decodes(model, single[:2], eval_decoding, args.seed, timer)  # warm-up
    result = {
        "diffucoder": str(Path(diffucoder.__file__).parent),  # which tree was measured
        "threads": torch.get_num_threads(),
        "prompts": len(problems),
        "eval_1x_T0.2": time_decodes(model, single, eval_decoding, args.seed, timer),
        "rollout_G8_T0.7": time_decodes(
            model, groups, rollout_decoding(rollout_cfg, cfg.decoding), args.seed, timer
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
