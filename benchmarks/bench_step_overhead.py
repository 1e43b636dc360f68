"""Seconds per optimizer step of the real training loop (DeepSpeed engine, one rank), this checkout
against a baseline revision, on the tiny preset's three step shapes.

Shapes: stage 3 (32 x 144, response masked, the LM head only at scored positions), stage 1's causal
phase (16 x 256, logits everywhere) and stage 1's diffusion phase (16 x 256, bidirectional). Each
child process builds the tiny architecture with the same random weights, runs
:class:`diffucoder.train.loop.Trainer` in fp32 (what ``precision: auto`` picks on a CPU without
native bfloat16) on synthetic batches drawn from a fixed seed, and reports its step times and
losses. The baseline's ``src/`` is exported with ``git archive`` and put first on ``PYTHONPATH``;
baseline and candidate alternate in rounds so a load change on the machine hits both alike.
``losses`` says whether the two runs' losses are bit-identical, else their largest relative gap
(same seed, same batches: anything beyond float32 reassociation noise is a change in what is
learned).

Emulate an AVX2-only CPU on a newer one as ``benchmarks/bench_precision.py`` says (set the
variables before the run; the children inherit them):

    ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python benchmarks/bench_step_overhead.py --baseline main --steps 20 --rounds 2

Prints one JSON object: the machine, torch's CPU capability, and per shape the median seconds per
step of baseline and candidate. ``--parts`` adds an in-process A/B of the optimizer, interleaved in
one process (far less noise than across processes): AdamW's per-tensor loop against its fused
kernel on the tiny model's parameters, and whether the updated weights are bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHAPES = ("stage3", "causal", "diffusion")
WARMUP_STEPS = 3


class SyntheticStream:
    """Fresh random batches per step (seeded), with the interface the loop reads from a stream."""

    batch_progress = progress = 0.5

    def __init__(self, shape: str, vocab_size: int):
        import torch

        self.shape, self.vocab_size, self.calls = shape, vocab_size, 0
        self.generator = torch.Generator().manual_seed(0)

    def next_batch(self):
        import torch

        rows, length = (32, 144) if self.shape == "stage3" else (16, 256)
        ids = torch.randint(10, self.vocab_size - 10, (rows, length), generator=self.generator)
        if self.shape != "stage3":
            return {"input_ids": ids}
        prompt = torch.zeros_like(ids, dtype=torch.bool)
        prompt[:, :64] = True  # tiny prompts are ~60-76 tokens
        return {"input_ids": ids, "prompt_mask": prompt}

    def state_dict(self) -> dict:
        return {}


def child(shape: str, steps: int) -> dict:
    """Time ``steps`` optimizer steps of ``shape`` in this process (after warm-up steps)."""

    from bench_precision import tiny_model

    import diffucoder
    from diffucoder.config import load_config
    from diffucoder.heap import retain_freed_memory
    from diffucoder.train import distributed
    from diffucoder.train.loop import Trainer
    from diffucoder.train.stages import PackedDiffusionStep, SFTDiffusionStep

    retain_freed_memory()  # as training does
    run_cfg = load_config("tiny")
    dist = distributed.init_distributed("cpu")
    model = tiny_model(4096)
    stream = SyntheticStream(shape, 4096)
    if shape == "stage3":
        stage, step_fn = (
            "instruct",
            SFTDiffusionStep("instruct", stream, run_cfg.instruct, model.mask_token_id),
        )
    else:
        stage = "pretrain"
        step_fn = PackedDiffusionStep(
            "pretrain", stream, run_cfg.pretrain, model.mask_token_id, model.pad_token_id
        )
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            run_cfg,
            stage,
            step_fn,
            model,
            tokenizer=None,
            out_uri=out,
            dist=dist,
            total_steps=10**6,
            precision="fp32",
        )
        trainer.setup("none")
        trainer.engine.train()
        if shape == "diffusion":  # past the causal phase and the annealing: a bidirectional step
            trainer.state.step = run_cfg.pretrain.causal_steps + run_cfg.pretrain.anneal_steps
        times, losses = [], []
        for i in range(WARMUP_STEPS + steps):
            start = time.perf_counter()
            metrics = trainer._optimizer_step()
            if i >= WARMUP_STEPS:
                times.append(time.perf_counter() - start)
            losses.append(metrics["loss"])
    return {"source": str(Path(diffucoder.__file__).parent), "times": times, "losses": losses}


def _median_ms(fn, rounds: int, repeats: int) -> float:
    times = []
    for _ in range(rounds):
        fn()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def parts(rounds: int = 3, repeats: int = 10) -> dict:
    """In-process A/B of AdamW on the tiny model's parameters: per-tensor loop vs fused kernel."""
    import torch
    from bench_precision import tiny_model

    model = tiny_model(4096).float()
    params = list(model.parameters())
    grads = [torch.randn_like(p) * 1e-3 for p in params]

    def adamw(**kwargs):
        copies = [p.detach().clone() for p in params]
        for copy, grad in zip(copies, grads, strict=True):
            copy.grad = grad
        return copies, torch.optim.AdamW(copies, lr=2e-3, weight_decay=0.1, **kwargs)

    optimizers = {"per_tensor": adamw(foreach=False), "fused": adamw(fused=True)}
    for _ in range(5):  # same grads, same hyper-parameters: are the updated weights the same bits?
        for _, optimizer in optimizers.values():
            optimizer.step()
    same = all(
        torch.equal(a, b) for a, b in zip(optimizers["per_tensor"][0], optimizers["fused"][0], strict=True)
    )
    adam = {name: _median_ms(optimizer.step, rounds, repeats) for name, (_, optimizer) in optimizers.items()}

    return {
        "adamw_step_ms": adam,
        "adamw_bit_identical_after_5_steps": same,
    }


def run_child(src: Path, shape: str, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path(__file__).parent}"}
    cmd = [sys.executable, __file__, "--child", shape, "--steps", str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (PYTHONPATH={src}) failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if Path(result["source"]) != src / "diffucoder":
        raise RuntimeError(f"child imported diffucoder from {result['source']}, not from {src}")
    return result


def loss_agreement(a: list[float], b: list[float]) -> str:
    if a == b:
        return "bit-identical"
    gap = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b, strict=True))
    return f"max relative gap {gap:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare against")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per child")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shapes", nargs="*", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--parts", action="store_true", help="also the in-process A/B of the parts")
    parser.add_argument("--child", choices=SHAPES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return

    import torch
    from machine import cpu_info, git_sha

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", args.baseline, "src"], cwd=REPO_ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sources = {"baseline": Path(tmp) / "src", "candidate": REPO_ROOT / "src"}
        for shape in args.shapes:
            runs: dict[str, list[dict]] = {name: [] for name in sources}
            for _ in range(args.rounds):
                for name, src in sources.items():
                    runs[name].append(run_child(src, shape, args.steps))
                    print(f"{shape} {name}: done", file=sys.stderr, flush=True)
            medians = {
                name: round(statistics.median(t for r in rs for t in r["times"]), 4)
                for name, rs in runs.items()
            }
            results[shape] = {
                "baseline_s_per_step": medians["baseline"],
                "candidate_s_per_step": medians["candidate"],
                "saved_s_per_step": round(medians["baseline"] - medians["candidate"], 4),
                "losses": loss_agreement(runs["baseline"][0]["losses"], runs["candidate"][0]["losses"]),
            }
    print(
        json.dumps(
            {
                **cpu_info(),
                "torch": torch.__version__,
                "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads(),
                "commit": git_sha(),
                "baseline": args.baseline,
                "steps": args.steps,
                "rounds": args.rounds,
                "results": results,
                **({"parts": parts()} if args.parts else {}),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
