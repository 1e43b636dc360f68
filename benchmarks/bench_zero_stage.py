"""One-rank stage-3 step time: plain torch AdamW vs DeepSpeed without ZeRO (stage 0) vs ZeRO-2.

The tiny preset trains on one rank, where ZeRO has nothing to partition; this measures what its
bookkeeping (flat fp32 gradient buffers, partition copies) costs per step, to choose the preset's
``zero_stage``. Same step as ``bench_precision.py``'s stage-3 shape (32 x 144, bf16-mixed with
``sdpa_fp32`` attention, LM head at masked positions), gradient clipping in all three; setups
interleaved in rounds so a load change hits all of them alike. Plain torch is the baseline.

    .venv/bin/python benchmarks/bench_zero_stage.py --model runs/tiny/<run>/instruct/final
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
from bench_precision import forward_loss, stage3_batch

from diffucoder.heap import retain_freed_memory
from diffucoder.model.io import load_model

SETUPS = {"plain torch AdamW": None, "DeepSpeed ZeRO-0": 0, "DeepSpeed ZeRO-2": 2}


def build(model_dir: str, zero_stage: int | None):
    """(model, callable for the forward, optimizer, engine or None)."""
    import deepspeed

    model, _ = load_model(model_dir, attn_implementation="sdpa_fp32")
    model.float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    if zero_stage is None:
        return model, model, optimizer, None
    config = {
        "train_micro_batch_size_per_gpu": 32,
        "gradient_accumulation_steps": 1,
        "train_batch_size": 32,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": zero_stage, "overlap_comm": False, "contiguous_gradients": True},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
    }
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=config, dist_init_required=False
    )
    return model, engine, optimizer, engine


def step_seconds(model, forward, optimizer, engine, batch) -> float:
    start = time.perf_counter()
    loss = forward_loss(forward, batch, autocast=True)
    if engine is not None:
        engine.backward(loss)
        engine.step()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a tiny checkpoint dir (any stage)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setup per round")
    args = parser.parse_args()
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29741",
        "RANK": "0",
        "WORLD_SIZE": "1",
    }.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("LOCAL_RANK", "0")
    dist.init_process_group("gloo")
    retain_freed_memory()  # as training does

    setups = {name: build(args.model, zero) for name, zero in SETUPS.items()}
    times: dict[str, list[float]] = {name: [] for name in setups}
    for round_index in range(args.rounds):
        for name, (model, forward, optimizer, engine) in setups.items():
            batch = stage3_batch(model, torch.Generator().manual_seed(round_index))
            for _ in range(2):  # warm-up
                step_seconds(model, forward, optimizer, engine, batch)
            times[name] += [step_seconds(model, forward, optimizer, engine, batch) for _ in range(args.steps)]
    dist.destroy_process_group()
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians["plain torch AdamW"]
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "median_step_s": {name: round(m, 4) for name, m in medians.items()},
                "vs_plain": {name: round(m / base, 3) for name, m in medians.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
