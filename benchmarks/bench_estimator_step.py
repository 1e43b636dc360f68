"""Time of one coupled log-prob estimate + backward on a GRPO-sized batch of a trained tiny model.

The policy pass of a GRPO micro-step: 8 sequences of a 128-token prompt + 80-token completion, three
noised copies (full mask + a complementary pair), one batched forward, backward through the sum of
the estimates. Compare source trees back to back on one machine (the baseline is an older checkout):

    .venv/bin/python benchmarks/bench_estimator_step.py --model runs/tiny/<run>/instruct/final
    PYTHONPATH=<old checkout>/src .venv/bin/python benchmarks/bench_estimator_step.py --model ...

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
from diffucoder.model.io import load_model
from diffucoder.rl.estimators import estimate_logps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained tiny checkpoint dir")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--completion-len", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()

    model, _ = load_model(args.model)
    model.train()
    total = args.prompt_len + args.completion_len
    sequences = torch.randint(
        10, model.config.vocab_size, (args.rows, total), generator=torch.Generator().manual_seed(0)
    )
    prompt_valid = torch.ones(args.rows, args.prompt_len, dtype=torch.bool)

    def step() -> float:
        start = time.perf_counter()
        mask_rng = torch.Generator().manual_seed(1)
        logps = estimate_logps(
            model,
            sequences,
            args.prompt_len,
            prompt_valid,
            mask_token_id=model.mask_token_id,
            estimator="coupled",
            generator=mask_rng,
        )
        logps.sum().backward()
        return time.perf_counter() - start

    for _ in range(2):  # warm-up
        step()
    times = [step() for _ in range(args.repeats)]
    print(
        json.dumps(
            {
                "diffucoder": str(Path(diffucoder.__file__).parent),
                "threads": torch.get_num_threads(),
                "shape": [args.rows, args.prompt_len, args.completion_len],
                "median_s": round(statistics.median(times), 4),
                "min_s": round(min(times), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
