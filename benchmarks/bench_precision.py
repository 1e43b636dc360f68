"""Training-step time of the tiny model in fp32 vs bf16-mixed, with SDPA in bf16 or in float32.

Two step shapes from the tiny preset: stage 3 (32 x 144, response masked at a random t, the LM head
only at scored positions) and stage 1's causal phase (16 x 256, a causal mask, logits everywhere).
Each step is forward + loss + backward + AdamW; the modes are interleaved in rounds so a load
change on the machine hits all of them alike. fp32 is the baseline of the same run.

    .venv/bin/python benchmarks/bench_precision.py                  # the tiny architecture, random weights
    .venv/bin/python benchmarks/bench_precision.py --model runs/tiny/<run>/instruct/final
    .venv/bin/python benchmarks/bench_precision.py --retain-freed-memory

Step time does not depend on the weights' values, so without ``--model`` the tiny preset's
architecture is built with random weights (a fresh machine needs no trained run). An AVX2-only CPU
is emulated on a newer one by capping torch's kernels, oneDNN and MKL at AVX2 (the variables must be
set before torch starts):

    ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python benchmarks/bench_precision.py

``--retain-freed-memory`` applies :func:`diffucoder.heap.retain_freed_memory` first (as training and
evaluation do); run both in turn to compare, since the allocator settings are per process. Prints one
JSON object: the CPU (model, the kernel's bfloat16-relevant flags, what torch reports, what
``precision: auto`` picks) and the median seconds per step for each shape and mode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from diffucoder.config import load_config
from diffucoder.heap import retain_freed_memory
from diffucoder.model import build_model
from diffucoder.model.io import load_model
from diffucoder.train.objective import elbo_loss, forward_noise, scored_logit_positions
from diffucoder.train.precision import CpuFeatures, choose_precision, cpu_flags

REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")

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


class VocabOnly:
    """What :func:`build_model` reads from a tokenizer: its size and special ids (the tiny vocabulary)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.mask_token_id, self.pad_token_id, self.eos_token_id = size - 1, size - 2, size - 3

    def __len__(self) -> int:
        return self.size


def tiny_model(vocab_size: int):
    torch.manual_seed(0)
    return build_model(load_config("tiny").model, VocabOnly(vocab_size))


def cpu_report() -> dict:
    features = CpuFeatures.detect()
    flags = cpu_flags()
    return {
        "cpu": features.model,
        "flags": {flag: flag in flags for flag in REPORTED_FLAGS},
        "torch_cpu_capability": features.capability,
        "torch_native_bf16": features.native_bf16,
        "auto_precision": choose_precision("auto", "cpu", cpu=features).precision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a tiny checkpoint dir (any stage); default: random weights")
    parser.add_argument("--vocab-size", type=int, default=4096, help="vocabulary without --model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode per round")
    parser.add_argument(
        "--modes", nargs="+", choices=list(MODES), default=list(MODES), help="which modes (default: all)"
    )
    parser.add_argument(
        "--retain-freed-memory", action="store_true", help="glibc settings of diffucoder.heap"
    )
    args = parser.parse_args()
    if args.retain_freed_memory:
        retain_freed_memory()

    model = load_model(args.model)[0] if args.model else tiny_model(args.vocab_size)
    model.float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    results = {}
    for shape, make in (("stage3 32x144", stage3_batch), ("stage1 causal 16x256", causal_batch)):
        batch = make(model, torch.Generator().manual_seed(0))
        times: dict[str, list[float]] = {mode: [] for mode in args.modes}
        for _ in range(args.rounds):
            for mode in args.modes:
                autocast, attention = MODES[mode]
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
                **cpu_report(),
                "retain_freed_memory": args.retain_freed_memory,
                "median_step_s": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
