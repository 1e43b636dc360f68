"""Decoding throughput and AR-ness on a briefly trained tiny-preset model (issue 5 benchmark).

1. Train the tiny preset's model (ELBO, diffucoder.train.objective) for a few hundred steps on CPython
   standard-library source, so its logits carry real structure (an untrained model's confidences
   are flat and would flatter the threshold decoder).
2. Plain Dream sampler tokens/s at steps = L, L/2, L/4 (greedy, entropy confidence).
3. Fast-dLLM decoding: threshold tau = 0.9 with blocks of 32 and no / prefix / dual KV cache, and the
   dual cache alone (no threshold); tokens/s, model forwards, speedup over steps = L and the share
   of completion tokens identical to the steps = L output (pass@1 needs a model that passes tests;
   the tiny model passes none, so agreement is the quality signal here).
4. Reference point: the same-size causal Qwen2 decoding L tokens with HF ``generate`` + KV cache.
5. The paper's temperature finding (§4.3): AR-ness (local@1, global@1; steps = L, one token per
   step, low-confidence remasking) at several temperatures.
6. Batched vs one prompt at a time (problems/s), for prompts of mixed lengths (evaluation: left
   padding) and for one prompt repeated (GRPO's G completions: no padding). Run it against an older
   tree with ``PYTHONPATH=<old checkout>/src`` for a before/after on the same machine, back to back.

Timings alternate between variants across repeats so load from other processes hits all alike;
the median is reported. Prints one JSON object; progress goes to stderr.

    .venv/bin/python benchmarks/bench_decoding.py [--train-steps 300] [--gen-len 128] [--repeats 3]
        [--sections speed,arness,batching]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import Qwen2ForCausalLM

from diffucoder.config import load_config
from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.decoding import DecodingConfig, diffusion_generate
from diffucoder.decoding.arness import global_arness, local_arness
from diffucoder.model import build_model
from diffucoder.train.objective import elbo_loss, forward_noise

TRAIN_MODULES = [
    "json.decoder", "json.encoder", "textwrap", "argparse", "dataclasses", "functools", "heapq", "bisect",
    "csv", "fractions", "shlex", "string", "calendar", "pprint", "difflib", "ast", "configparser",
    "tokenize", "gettext", "ipaddress",
]  # fmt: skip
PROMPT_MODULES = ["statistics", "colorsys", "fnmatch", "glob", "base64", "graphlib", "numbers", "keyword"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def git_sha() -> str:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def sources(names: list[str]) -> list[str]:
    return [inspect.getsource(importlib.import_module(name)) for name in names]


def train(model, tokenizer, steps: int, seq_len: int, batch: int) -> list[float]:
    """Brief ELBO pre-training on stdlib source chunks."""
    ids = [
        t for text in sources(TRAIN_MODULES) for t in tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    ]
    n = len(ids) // seq_len
    data = torch.tensor(ids[: n * seq_len]).reshape(n, seq_len)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
    losses = []
    model.train()
    for step in range(steps):
        rows = torch.randint(0, n, (batch,), generator=gen)
        nb = forward_noise(data[rows], None, tokenizer.mask_token_id, generator=gen)
        loss, stats = elbo_loss(model(nb.noisy_ids), data[rows], nb.masked, nb.t)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(stats["ce"])
        if step % 50 == 0 or step == steps - 1:
            log(f"train step {step}: ce {stats['ce']:.3f}")
    model.eval()
    return losses


def prompts(tokenizer, count: int, length: int) -> torch.Tensor:
    """``count`` prompts of ``length`` tokens: openings of functions from held-out stdlib modules."""
    out = []
    for text in sources(PROMPT_MODULES):
        for chunk in text.split("\ndef ")[1:]:
            ids = tokenizer("def " + chunk)["input_ids"]
            if len(ids) >= length:
                out.append(ids[:length])
    if len(out) < count:
        raise RuntimeError(f"only {len(out)} prompts of {length} tokens in {PROMPT_MODULES}")
    step = len(out) // count
    return torch.tensor(out[::step][:count])


def mixed_prompts(tokenizer, count: int, min_len: int, max_len: int) -> list[list[int]]:
    """``count`` function openings whose lengths spread over [min_len, max_len], shortest first
    (evaluation sorts its prompts by length before batching them)."""
    chunks = [
        tokenizer("def " + chunk)["input_ids"][:max_len]
        for text in sources(PROMPT_MODULES)
        for chunk in text.split("\ndef ")[1:]
    ]
    chunks = sorted((c for c in chunks if len(c) >= min_len), key=len)
    if len(chunks) < count:
        raise RuntimeError(f"only {len(chunks)} prompts of >= {min_len} tokens in {PROMPT_MODULES}")
    return [chunks[round(i * (len(chunks) - 1) / max(count - 1, 1))] for i in range(count)]


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def bench_batching(model, tokenizer, gen_len: int, batch: int, repeats: int) -> dict:
    """Problems/s decoding ``batch`` prompts as one left-padded batch vs one prompt at a time."""
    cfg = DecodingConfig(max_new_tokens=gen_len, steps=gen_len, temperature=0.0, top_p=None, alg="entropy")
    mixed = mixed_prompts(tokenizer, batch, min_len=16, max_len=192)
    workloads = {
        "mixed lengths (left-padded)": mixed,
        "one prompt repeated (no padding)": [mixed[batch // 2]] * batch,
    }

    def batched(rows):
        ids, mask = left_pad(rows, model.pad_token_id)
        return diffusion_generate(model, ids, mask if not mask.all() else None, cfg).sequences[:, -gen_len:]

    def single(rows):
        return torch.cat(
            [diffusion_generate(model, torch.tensor([r]), None, cfg).sequences[:, -gen_len:] for r in rows]
        )

    results = {}
    with torch.no_grad():
        for name, rows in workloads.items():
            times = {"batched": [], "one at a time": []}
            outputs = {}
            for r in range(repeats):
                for mode, fn in (("batched", batched), ("one at a time", single)):
                    seconds, outputs[mode] = time_call(lambda fn=fn, rows=rows: fn(rows))
                    times[mode].append(seconds)
                log(
                    f"batching {name} repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
                )
            med = {mode: statistics.median(v) for mode, v in times.items()}
            results[name] = {
                "prompt_tokens": [len(r) for r in rows],
                "batched_problems_per_s": round(batch / med["batched"], 3),
                "one_at_a_time_problems_per_s": round(batch / med["one at a time"], 3),
                "batched_vs_one_at_a_time": round(med["one at a time"] / med["batched"], 2),
                # greedy: differs only where float noise from padding flips a near-tie of a weak model
                "token_agreement": round(
                    (outputs["batched"] == outputs["one at a time"]).float().mean().item(), 3
                ),
            }
    return results


def time_call(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_speed(model, hf_causal, ids: torch.Tensor, gen_len: int, repeats: int, block: int) -> dict:
    base = dict(max_new_tokens=gen_len, temperature=0.0, top_p=None, alg="entropy")
    variants = {
        "plain steps=L": DecodingConfig(**base, steps=gen_len),
        "plain steps=L/2": DecodingConfig(**base, steps=gen_len // 2),
        "plain steps=L/4": DecodingConfig(**base, steps=gen_len // 4),
        "threshold0.9 block32": DecodingConfig(
            **base, steps=gen_len, fast=dict(enabled=True, threshold=0.9, block_length=block, kv_cache="none")
        ),
        "threshold0.9 block32 prefix-cache": DecodingConfig(
            **base,
            steps=gen_len,
            fast=dict(enabled=True, threshold=0.9, block_length=block, kv_cache="prefix"),
        ),
        "threshold0.9 block32 dual-cache": DecodingConfig(
            **base, steps=gen_len, fast=dict(enabled=True, threshold=0.9, block_length=block, kv_cache="dual")
        ),
        "dual-cache only block32": DecodingConfig(
            **base,
            steps=gen_len,
            fast=dict(enabled=True, threshold=None, block_length=block, kv_cache="dual"),
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    times["AR causal HF generate+KV cache"] = []
    outputs = {}

    def ar_generate():
        return hf_causal.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen_len, min_new_tokens=gen_len,
            do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None,
        )  # fmt: skip

    with torch.no_grad():
        for name, cfg in variants.items():  # warm-up
            outputs[name] = diffusion_generate(model, ids, None, cfg)
        ar_generate()
        for r in range(repeats):
            for name, cfg in variants.items():
                seconds, _ = time_call(lambda cfg=cfg: diffusion_generate(model, ids, None, cfg))
                times[name].append(seconds)
            seconds, _ = time_call(ar_generate)
            times["AR causal HF generate+KV cache"].append(seconds)
            log(f"speed repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))

    tokens = ids.shape[0] * gen_len
    reference = outputs["plain steps=L"].sequences[:, -gen_len:]
    base_tps = tokens / statistics.median(times["plain steps=L"])
    results = {}
    for name, samples in times.items():
        tps = tokens / statistics.median(samples)
        row = {"tokens_per_s": round(tps, 1), "median_s": round(statistics.median(samples), 3),
               "speedup_vs_plain_L": round(tps / base_tps, 2)}  # fmt: skip
        if name in outputs:
            out = outputs[name]
            row["forward_passes"] = out.forward_passes
            row["token_agreement_vs_plain_L"] = round(
                (out.sequences[:, -gen_len:] == reference).float().mean().item(), 3
            )
        results[name] = row
    return results


def bench_arness(model, ids: torch.Tensor, gen_len: int, temperatures: list[float], seeds: int) -> dict:
    """AR-ness per temperature, paper setting: steps = L (one token per step), low-confidence remasking."""
    results = {}
    for temp in temperatures:
        cfg = DecodingConfig(
            max_new_tokens=gen_len, steps=gen_len, temperature=temp, top_p=0.95, alg="maskgit_plus"
        )
        traces = []
        for seed in range(seeds):
            gen = torch.Generator().manual_seed(seed)
            traces.append(diffusion_generate(model, ids, None, cfg, generator=gen, return_trace=True).trace)
        trace = torch.cat(traces)
        results[str(temp)] = {
            "local@1": round(local_arness(trace, 1).mean().item(), 3),
            "local@3": round(local_arness(trace, 3).mean().item(), 3),
            "global@1": round(global_arness(trace, 1).mean().item(), 3),
            "global@1_std": round(global_arness(trace, 1).std(unbiased=False).item(), 3),
            "global@3": round(global_arness(trace, 3).mean().item(), 3),
            "sequences": trace.shape[0],
        }
        log(f"arness T={temp}: {results[str(temp)]}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--train-seq-len", type=int, default=256)
    parser.add_argument("--gen-len", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4, help="prompts decoded together (speed runs)")
    parser.add_argument("--arness-prompts", type=int, default=8)
    parser.add_argument("--arness-len", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batching-prompts", type=int, default=16)
    parser.add_argument("--batching-gen-len", type=int, default=32, help="evaluation's tiny runs: 32 at 1x")
    parser.add_argument("--sections", default="speed,arness,batching", help="comma-separated subset")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = load_config("tiny")
    tokenizer = train_tokenizer(sources(TRAIN_MODULES), vocab_size=4096)
    model = build_model(cfg.model, tokenizer)
    train_start = time.perf_counter()
    losses = train(model, tokenizer, args.train_steps, seq_len=args.train_seq_len, batch=8)
    train_s = time.perf_counter() - train_start
    hf_causal = Qwen2ForCausalLM(
        model.hf.config.__class__(**{**model.hf.config.to_dict(), "use_cache": True})
    ).eval()

    ids = prompts(tokenizer, max(args.batch, args.arness_prompts), args.prompt_len)
    speed = arness = batching = None
    if "speed" in sections:
        speed = bench_speed(model, hf_causal, ids[: args.batch], args.gen_len, args.repeats, block=32)
    if "arness" in sections:
        temps = [0.0, 0.2, 0.6, 1.0, 1.2]
        arness = bench_arness(model, ids[: args.arness_prompts], args.arness_len, temps, args.seeds)
    if "batching" in sections:
        batching = bench_batching(
            model, tokenizer, args.batching_gen_len, args.batching_prompts, args.repeats
        )

    best = max(
        (v["speedup_vs_plain_L"] for k, v in (speed or {}).items() if k.startswith("threshold")), default=None
    )
    print(json.dumps({
        "name": "decoding",
        "device": f"cpu ({args.threads} thread)",
        "config": {**vars(args), "model": "tiny preset (hidden 256, 4 layers, vocab 4096)",
                   "train_ce_first_last": [round(losses[0], 3), round(sum(losses[-20:]) / len(losses[-20:]), 3)]
                   if losses else None,
                   "train_s": round(train_s, 1)},
        "metric": "fast_decoding_speedup_vs_plain_steps_L",
        "value": best,
        "unit": "x",
        "git_sha": git_sha(),
        "speed": speed,
        "arness_vs_temperature": arness,
        "batched_vs_one_at_a_time": batching,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
