"""Training throughput and peak memory of the stage-1 trainer on CPU (issue 3).

Runs the real ``diffucoder train --stage pretrain`` (DeepSpeed, gloo) on packed shards built from
CPython stdlib source with the data stage's own packer, for each model size in
{tiny preset model, ~50M-parameter Qwen2} and each layout in
{1 rank ZeRO-2 (the baseline), 2 ranks ZeRO-2, 2 ranks ZeRO-3}. Every run uses the same global
batch (``--global-batch`` sequences per optimizer step) so the 2-rank runs do the same work per step.

Reported per run: tokens/s averaged over the logged windows after the first (the first holds
start-up and allocator warm-up), peak RSS of rank 0, and the model FLOPs per token of
:func:`diffucoder.train.flops.flops_per_token` (to turn a GPU run's tokens/s into MFU with
:func:`diffucoder.train.flops.mfu`). On 2 cores the 1-rank baseline gets 2 threads and each of the
2 ranks 1 thread, so the speed-up measures data parallelism against intra-op threading on the
same cores.

Prints one JSON object; progress goes to stderr.

    .venv/bin/python benchmarks/bench_train.py [--steps 6] [--sizes tiny,50m]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import git_sha

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "tiny": [],  # the tiny preset's model
    "50m": [
        "model.hidden_size=640",
        "model.num_hidden_layers=10",
        "model.num_attention_heads=10",
        "model.num_key_value_heads=2",
        "model.intermediate_size=1792",
    ],
}
LAYOUTS = [("1rank_zero2", 1, 2), ("2rank_zero2", 2, 2), ("2rank_zero3", 2, 3)]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_data(root: Path, seq_len: int) -> str:
    """Packed shards from stdlib modules (tokenizer trained on them, 4096 vocab as in the tiny preset)."""
    import argparse as argparse_mod
    import json.decoder
    import textwrap
    import typing

    import pyarrow as pa
    import pyarrow.parquet as pq

    from diffucoder.data.pack import pack_shards
    from diffucoder.data.tokenizer import save_tokenizer, train_tokenizer

    texts = [inspect.getsource(m) for m in (argparse_mod, json.decoder, textwrap, typing, inspect)]
    save_tokenizer(train_tokenizer(texts, 4096), str(root / "tok"))
    (root / "text").mkdir()
    pq.write_table(pa.table({"text": texts}), root / "text" / "shard-00000.parquet")
    pack_shards(
        [str(root / "text" / "shard-00000.parquet")], str(root / "tok"), seq_len, str(root / "packed")
    )
    return str(root / "packed")


def run_one(
    data: str, out: Path, size: str, nproc: int, zero: int, steps: int, global_batch: int, seq_len: int
) -> dict:
    overrides = SIZES[size] + [
        f"pretrain.max_steps={steps}",
        "pretrain.warmup_steps=1",
        f"pretrain.seq_len={seq_len}",
        f"pretrain.micro_batch_size={global_batch // nproc}",
        f"pretrain.zero_stage={zero}",
        "pretrain.log_every_steps=1",
        f"pretrain.save_every_steps={steps}",
    ]
    cmd = [
        sys.executable,
        "-m",
        "diffucoder.cli",
        "train",
        "--stage",
        "pretrain",
        "--config",
        "tiny",
        "--data",
        data,
        "--out",
        str(out),
        "--resume",
        "none",
        "--nproc-per-node",
        str(nproc),
        *overrides,
    ]
    cores = os.cpu_count() or 1
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(max(1, cores // nproc)),
        "DS_ACCELERATOR": "cpu",
        "MLFLOW_TRACKING_URI": f"sqlite:///{out.parent / 'mlflow.db'}",
    }
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    state = json.loads((out / "checkpoints" / f"step-{steps:06d}" / "trainer_state.json").read_text())
    windows = state["history"][1:]  # drop the first step (warm-up)
    return {
        "tokens_per_sec": sum(h["tokens_per_sec"] for h in windows) / len(windows),
        "step_time_s": sum(h["step_time"] for h in windows) / len(windows),
        "peak_rss_mb_rank0": max(h["peak_memory_mb"] for h in state["history"]),
        "wall_s": time.perf_counter() - start,
    }


def model_facts(size: str) -> dict:
    from diffucoder.config import load_config
    from diffucoder.train.flops import flops_per_token

    m = load_config("tiny", SIZES[size]).model
    vocab = 4096
    per_layer = (
        2 * m.hidden_size * m.hidden_size
        + 2 * m.hidden_size * m.hidden_size // m.num_attention_heads * m.num_key_value_heads
        + 3 * m.hidden_size * m.intermediate_size
    )
    params = m.num_hidden_layers * per_layer + 2 * vocab * m.hidden_size
    return {
        "params": params,
        "layers": m.num_hidden_layers,
        "hidden": m.hidden_size,
        "flops_per_token": lambda seq: flops_per_token(params, m.num_hidden_layers, m.hidden_size, seq),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--sizes", default="tiny,50m")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        data = build_data(root, args.seq_len)
        for size in args.sizes.split(","):
            facts = model_facts(size)
            for name, nproc, zero in LAYOUTS:
                _log(f"{size} {name} ...")
                r = run_one(
                    data,
                    root / f"{size}-{name}",
                    size,
                    nproc,
                    zero,
                    args.steps,
                    args.global_batch,
                    args.seq_len,
                )
                _log(f"  {r}")
                results[f"{size}/{name}"] = r
            base = results[f"{size}/1rank_zero2"]["tokens_per_sec"]
            for name, _, _ in LAYOUTS[1:]:
                results[f"{size}/{name}"]["speedup_vs_1rank"] = (
                    results[f"{size}/{name}"]["tokens_per_sec"] / base
                )
            results[f"{size}/model"] = {
                "params": facts["params"],
                "flops_per_token": facts["flops_per_token"](args.seq_len),
            }
    first = args.sizes.split(",")[0]
    print(
        json.dumps(
            {
                "name": "train_throughput",
                "device": f"cpu x{os.cpu_count()}",
                "config": vars(args),
                "metric": f"{first}/2rank_zero2 speedup vs 1 rank",
                "value": results[f"{first}/2rank_zero2"]["speedup_vs_1rank"],
                "unit": "x",
                "git_sha": git_sha(),
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
