"""Training-step time of the tiny model in fp32 vs bf16-mixed, with SDPA in bf16 or in float32.

Two step shapes from the tiny preset: stage 3 (32 x 144, response masked at a random t, the LM head
only at scored positions) and stage 1's causal phase (16 x 256, a causal mask, logits everywhere).
Each step is forward + loss + backward + AdamW; the modes are interleaved in rounds so a load
change on the machine hits all of them alike. fp32 is the baseline of the same run.

    .venv/bin/python benchmarks/bench_precision.py --model runs/tiny/<run>/instruct/final
    .venv/bin/python benchmarks/bench_precision.py --model ... --retain-freed-memory

``--retain-freed-memory`` applies :func:`diffucoder.heap.retain_freed_memory` first (as training and
evaluation do); run both in turn to compare, since the allocator settings are per process. Prints one JSON object: median seconds per step for each shape and mode.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from diffucoder.heap import retain_freed_memory
from diffucoder.model.io import load_model
from diffucoder.train.objective import elbo_loss, forward_noise, scored_logit_positions

MODES = {  # name -> (autocast on, attention implementation)
    "fp32": (False, "sdpa"),
    "bf16-mixed, bf16 attention": (True, "sdpa"),
    "bf16-mixed, sdpa_fp32": (True, "sdpa_fp32"),
}


def stage3_batch(model, generator):
    ids = torch.randint(10, model.config.vocab_size, (32, 144), generator=generator)
    response = torch.zeros_like(ids, dtype=torch.bool)
    response[:, 64:] = True  # tiny prompts are ~60-76 tokens
    noised = forward_noise(ids, response, model.mask_token_id, generator=generator)
    return ids, noised.noisy_ids, None, scored_logit_positions(noised.masked), noised.masked, noised.t


def causal_batch(model, generator):
    ids = torch.randint(10, model.config.vocab_size, (16, 256), generator=generator)
    causal = torch.ones(256, 256, dtype=torch.bool).tril()[None, None]
    scored = torch.ones_like(ids, dtype=torch.bool)
    scored[:, 0] = False
    return ids, ids, causal, None, scored, torch.ones(16)


def forward_loss(forward, batch, autocast: bool) -> torch.Tensor:
    """The step's forward and ELBO loss (``forward`` is the model or a DeepSpeed engine)."""
    ids, inputs, attention, logits_at, masked, t = batch
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = forward(inputs, attention_mask=attention, logits_at=logits_at)
    return elbo_loss(logits, ids, masked, t)[0]


def step_seconds(model, optimizer, batch, autocast: bool) -> float:
    start = time.perf_counter()
    loss = forward_loss(model, batch, autocast)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a tiny checkpoint dir (any stage)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode per round")
    parser.add_argument(
        "--retain-freed-memory", action="store_true", help="glibc settings of diffucoder.heap"
    )
    args = parser.parse_args()
    if args.retain_freed_memory:
        retain_freed_memory()

    model, _ = load_model(args.model)
    model.float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    results = {}
    for shape, make in (("stage3 32x144", stage3_batch), ("stage1 causal 16x256", causal_batch)):
        batch = make(model, torch.Generator().manual_seed(0))
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode, (autocast, attention) in MODES.items():
                model.hf.config._attn_implementation = attention
                for _ in range(2):  # warm-up
                    step_seconds(model, optimizer, batch, autocast)
                times[mode] += [step_seconds(model, optimizer, batch, autocast) for _ in range(args.steps)]
        results[shape] = {mode: round(statistics.median(ts), 4) for mode, ts in times.items()}
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                "machine": platform.processor() or platform.machine(),
                "retain_freed_memory": args.retain_freed_memory,
                "median_step_s": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
