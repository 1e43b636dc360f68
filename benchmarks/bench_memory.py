"""The planner's memory estimate against the measured peak memory of real training steps (CPU).

For each model size (the tiny preset's model and a ~35M-parameter Qwen2), micro-batch size and
layout (1 rank without ZeRO, 1 rank ZeRO-2, 2 ranks ZeRO-2 and ZeRO-3 under torchrun with gloo),
each rank runs ``diffucoder.train.run.run`` (the function ``diffucoder train`` calls: DeepSpeed,
the real stage-1 step) for a few steps of the causal phase, whose loss scores every position, the
step the planner sizes for.

Measured, on rank 0: the peak of live tensor bytes inside the optimizer steps, from the allocation
and free events torch's profiler records for every CPU tensor (``profile_memory=True``), counted
from the start of ``run`` (model, DeepSpeed state, batches, activations). That is the quantity a
GPU's caching allocator reports as ``max_memory_allocated`` and the quantity the planner estimates
(``diffucoder.ops.memory.training_memory`` for the same config; ``plan.memory_reserve_gib`` is kept
for what the runtime and the allocator add on top). Target: within +-25 % on every row.

Also reported: rank 0's resident-set growth over the same steps (the peak the loop logs after each
step, minus the resident set after the imports, with the peak counter reset through
``/proc/self/clear_refs``). On a CPU it is not the tensor peak: pages of a large buffer that are never
written are not resident, and glibc keeps freed memory mapped (``diffucoder.heap`` asks it to).

    .venv/bin/python benchmarks/bench_memory.py [--steps 2] [--sizes tiny,35m] [--precision fp32]

Prints one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_info, git_sha

REPO_ROOT = Path(__file__).resolve().parents[1]
SEQ_LEN = 256
SIZES = {
    "tiny": {"overrides": [], "micro": (4, 16)},
    "35m": {
        "overrides": [
            "model.hidden_size=512",
            "model.num_hidden_layers=11",
            "model.num_attention_heads=8",
            "model.num_key_value_heads=2",
            "model.intermediate_size=1408",
        ],
        "micro": (2, 8),
    },
}
LAYOUTS = [
    ("1 rank, no ZeRO", 1, 0),
    ("1 rank, ZeRO-2", 1, 2),
    ("2 ranks, ZeRO-2", 2, 2),
    ("2 ranks, ZeRO-3", 2, 3),
]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def overrides(size: str, micro: int, zero: int, steps: int, precision: str) -> list[str]:
    return SIZES[size]["overrides"] + [
        f"pretrain.max_steps={steps}",
        f"pretrain.causal_steps={steps}",
        "pretrain.warmup_steps=1",
        f"pretrain.seq_len={SEQ_LEN}",
        f"pretrain.micro_batch_size={micro}",
        "pretrain.grad_accum_steps=1",
        f"pretrain.zero_stage={zero}",
        f"pretrain.precision={precision}",
        f"pretrain.save_every_steps={steps}",
        "pretrain.log_every_steps=1",
        "model.attn_implementation=" + ("sdpa_fp32" if precision == "bf16-mixed" else "sdpa"),
    ]


STEP_MARK = "bench-memory/optimizer-step"
CPU_DEVICE_TYPES = ("CPU", "MKLDNN", "IDEEP")


def tensor_peaks(events) -> dict[str, float]:
    """Live tensor bytes from the profiler's allocation events: the peak inside the optimizer steps
    (every step is wrapped in :data:`STEP_MARK`) and the level when the first step starts.

    Bytes are counted from the start of profiling, i.e. everything ``run`` allocated (model, optimizer,
    DeepSpeed buffers, batches) minus what it freed; what was allocated before and freed during it
    would count negative (nothing of size: the worker imports and warms up only).
    """
    steps = sorted((e.start_ns(), e.end_ns()) for e in events if e.name() == STEP_MARK)
    allocs = sorted(
        (e.start_ns(), e.nbytes())
        for e in events
        if e.name() == "[memory]" and str(e.device_type()).rsplit(".", 1)[-1] in CPU_DEVICE_TYPES
    )
    if not steps:
        raise RuntimeError("the profiler recorded no optimizer step")
    live, peak, at_first_step, window = 0, 0, None, 0
    for t, nbytes in allocs:
        while window < len(steps) and t > steps[window][1]:
            window += 1
        if at_first_step is None and t >= steps[0][0]:
            at_first_step = live
        live += nbytes
        if window < len(steps) and steps[window][0] <= t <= steps[window][1]:
            peak = max(peak, live)
    return {"tensor_peak_mb": peak / 2**20, "tensor_before_steps_mb": (at_first_step or 0) / 2**20}


def worker(args: argparse.Namespace) -> None:
    """One rank: warm up the imports and the tracking store, reset the peak counter, train, report."""
    import deepspeed  # noqa: F401 - imported before the baseline, as every rank of a real run has it
    import mlflow
    import transformers.models.qwen2.modeling_qwen2  # noqa: F401
    from torch.profiler import ProfilerActivity, profile, record_function

    from diffucoder.config import load_config
    from diffucoder.train import loop
    from diffucoder.train.run import run

    optimizer_step = loop.Trainer._optimizer_step

    def marked_step(self):  # the benchmark's only instrumentation: where each step starts and ends
        with record_function(STEP_MARK):
            return optimizer_step(self)

    loop.Trainer._optimizer_step = marked_step
    if args.malloc_release:  # leave glibc's heap to the MALLOC_* settings measure() passes
        import diffucoder.heap

        diffucoder.heap.retain_freed_memory = lambda: False
    cfg = load_config("tiny", json.loads(args.overrides))
    mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_experiments()
    baseline = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS (VmHWM) := current RSS
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = run(cfg, "pretrain", args.data, args.out, resume="none")
    if int(os.environ.get("RANK", "0")) == 0:
        # the loop logs rank 0's peak resident set after every step (log_every_steps=1), before the
        # final checkpoint and plots, which are not training steps
        state = Path(args.out, "checkpoints", f"step-{result.steps:06d}", "trainer_state.json")
        peak = max(h["peak_memory_mb"] for h in json.loads(state.read_text())["history"])
        Path(args.out, "memory.json").write_text(
            json.dumps(
                {
                    "baseline_mb": baseline / 1024,
                    "peak_mb": peak,
                    **tensor_peaks(prof.profiler.kineto_results.events()),
                }
            )
        )


# glibc returns every freed block of 128 KiB or more to the OS at once (no dynamic mmap threshold)
MALLOC_RELEASE = {
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "MALLOC_TRIM_THRESHOLD_": "131072",
    "MALLOC_TOP_PAD_": "0",
}


def measure(
    data: str, out: Path, ranks: int, ovr: list[str], mlflow_uri: str, *, malloc_release: bool
) -> dict:
    script = [str(Path(__file__).resolve()), "--worker", "--data", data, "--out", str(out)]
    script += ["--overrides", json.dumps(ovr)] + (["--malloc-release"] if malloc_release else [])
    if ranks == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={ranks}",
            *script,
        ]
    cores = os.cpu_count() or 1
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(max(1, cores // ranks)),
        "DS_ACCELERATOR": "cpu",
        "MLFLOW_TRACKING_URI": mlflow_uri,
        **(MALLOC_RELEASE if malloc_release else {}),
    }
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "memory.json").read_text())


def predict(ovr: list[str], ranks: int) -> dict:
    from diffucoder.config import load_config
    from diffucoder.ops.memory import training_memory

    cfg = load_config("tiny", ovr)
    st = cfg.pretrain
    est = training_memory(
        cfg.model,
        vocab_size=cfg.plan.vocab_size,
        zero_stage=st.zero_stage,
        precision=st.precision,
        ranks=ranks,
        rows=st.micro_batch_size,
        seq_len=st.seq_len,
        scored_positions=st.micro_batch_size * st.seq_len,
    )
    return {k: v * 1024 for k, v in est.as_gib().items()}  # MiB


def machine() -> dict:
    from importlib.metadata import version

    return {**cpu_info(), "torch": version("torch"), "deepspeed": version("deepspeed")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="2: the second step has the Adam states")
    parser.add_argument("--sizes", default="tiny,35m")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16-mixed"])
    parser.add_argument(
        "--malloc-release",
        action="store_true",
        help="glibc returns freed memory at once (instead of diffucoder.heap's settings): the resident "
        "set then tracks the live tensors, which shows what the allocator keeps",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from bench_train import build_data

    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        data = build_data(root, SEQ_LEN)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        for size in args.sizes.split(","):
            for micro in SIZES[size]["micro"]:
                for name, ranks, zero in LAYOUTS:
                    ovr = overrides(size, micro, zero, args.steps, args.precision)
                    out = root / f"{size}-{micro}-{ranks}-{zero}"
                    _log(f"{size} micro {micro} {name} ...")
                    rank0 = measure(data, out, ranks, ovr, uri, malloc_release=args.malloc_release)
                    rss = rank0["peak_mb"] - rank0["baseline_mb"]
                    pred = predict(ovr, ranks)
                    row = {
                        "model": size,
                        "micro_batch": micro,
                        "layout": name,
                        "tensor_peak_mib": round(rank0["tensor_peak_mb"], 1),
                        "planned_mib": round(pred["total"], 1),
                        "ratio": round(pred["total"] / rank0["tensor_peak_mb"], 3),
                        # the gradient bucket (5e8 elements) dominates ZeRO rows of small models; it
                        # is live at the peak (allocated at the first gradient hook or at start-up)
                        "ratio_without_buffers": round(
                            (pred["total"] - pred["buffers"]) / (rank0["tensor_peak_mb"] - pred["buffers"]), 3
                        ),
                        "tensor_before_steps_mib": round(rank0["tensor_before_steps_mb"], 1),
                        "rss_growth_mib": round(rss, 1),
                        "planned_parts_mib": {k: round(v, 1) for k, v in pred.items() if k != "total"},
                        "baseline_rss_mib": round(rank0["baseline_mb"], 1),
                    }
                    _log(f"  {row}")
                    rows.append(row)
    worst = max(abs(r["ratio"] - 1) for r in rows)
    print(
        json.dumps(
            {
                "name": "planner_memory_vs_measured",
                "machine": machine(),
                "config": {
                    "steps": args.steps,
                    "seq_len": SEQ_LEN,
                    "precision": args.precision,
                    "malloc_release": args.malloc_release,
                },
                "metric": "worst |planned / measured - 1|",
                "value": round(worst, 3),
                "goal": 0.25,
                "git_sha": git_sha(),
                "wall_s": round(time.time() - started),
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
