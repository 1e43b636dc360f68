"""Throughput of one masked-diffusion training step vs the same HF model trained as a causal LM.

Diffusion step: forward_noise + bidirectional forward + ELBO + backward (diffucoder.train.objective),
with the LM head run only at the scored positions (``logits_at``), as the trainer does. Baselines,
measured in the same run on the same weights and batch: the HF Qwen2ForCausalLM with its own causal
attention and built-in shifted cross-entropy (``labels=input_ids``) + backward; and the same diffusion
step with the head over every position (``full_head``), which measures what ``logits_at`` saves. The
optimizer step is left out of both (it is the same cost for both). Repeats alternate between the two
so that load from other processes hits both alike. The headline ratio is the median of the per-repeat
paired ratios (each diffusion step against the causal step run right after it), which cancels slow
drifts in machine load; median and best-of-N tokens/s are reported beside it.

Target: diffusion tokens/s >= 0.95 x causal-LM tokens/s.

    .venv/bin/python benchmarks/bench_model.py [--repeats 8] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import textwrap
import time

import torch
from machine import git_sha
from transformers import Qwen2ForCausalLM

from diffucoder.config import load_config
from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.model import build_model
from diffucoder.model.config import ModelConfig
from diffucoder.train.objective import elbo_loss, forward_noise, scored_logit_positions

# name -> (model overrides on the tiny preset, batch, seq_len, prompt_len); prompt_len > 0 = an SFT
# step whose first prompt_len positions are never noised (the tiny stage 3: 32 x 144, prompt <= 76)
SETUPS = {
    "tiny": ({}, 4, 256, 0),
    "tiny-sft": ({}, 32, 144, 76),
    "cpu-35m": (
        {"hidden_size": 512, "num_hidden_layers": 10, "num_attention_heads": 8, "num_key_value_heads": 4,
         "intermediate_size": 1408},
        4,
        256,
        0,
    ),
}  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def diffusion_step(model, ids, maskable, mask_id, gen, selective_head: bool) -> None:
    model.zero_grad(set_to_none=True)
    nb = forward_noise(ids, maskable, mask_id, generator=gen)
    logits_at = scored_logit_positions(nb.masked) if selective_head else None
    loss, _ = elbo_loss(model(nb.noisy_ids, logits_at=logits_at), ids, nb.masked, nb.t)
    loss.backward()


def causal_step(hf, ids) -> None:
    hf.zero_grad(set_to_none=True)
    hf(input_ids=ids, labels=ids, use_cache=False).loss.backward()


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def bench_setup(
    name: str, cfg: ModelConfig, tokenizer, batch: int, seq_len: int, prompt_len: int, repeats: int, device
) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer).to(device).train()
    causal = Qwen2ForCausalLM(model.hf.config).to(device=device, dtype=model.hf.dtype).train()
    causal.load_state_dict(model.hf.state_dict())  # a fresh module keeps causal attention
    ids = torch.randint(8, len(tokenizer), (batch, seq_len), device=device)
    maskable = None
    if prompt_len:
        maskable = torch.ones_like(ids, dtype=torch.bool)
        maskable[:, :prompt_len] = False
    gen = torch.Generator(device=device).manual_seed(0)
    mask_id = tokenizer.mask_token_id
    steps = {
        "diffusion": lambda: diffusion_step(model, ids, maskable, mask_id, gen, selective_head=True),
        "causal_lm": lambda: causal_step(causal, ids),
        "full_head": lambda: diffusion_step(model, ids, maskable, mask_id, gen, selective_head=False),
    }
    for fn in steps.values():  # warm-up (allocator, kernels, thread pools)
        fn()
        fn()
    times = {k: [] for k in steps}
    for _ in range(repeats):
        for key, fn in steps.items():
            times[key].append(timed(fn, device))
    tokens = batch * seq_len
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    best = {k: tokens / min(v) for k, v in times.items()}
    paired = [c / d for d, c in zip(times["diffusion"], times["causal_lm"], strict=True)]
    head_paired = [f / d for d, f in zip(times["diffusion"], times["full_head"], strict=True)]
    params = sum(p.numel() for p in model.parameters())
    result = {
        "params_m": round(params / 1e6, 2),
        "batch": batch,
        "seq_len": seq_len,
        "prompt_len": prompt_len,
        "dtype": cfg.dtype,
        "diffusion_tokens_per_s": round(tps["diffusion"], 1),
        "causal_lm_tokens_per_s": round(tps["causal_lm"], 1),
        "ratio": round(statistics.median(paired), 3),
        "ratio_of_medians": round(tps["diffusion"] / tps["causal_lm"], 3),
        "ratio_best_of_n": round(best["diffusion"] / best["causal_lm"], 3),
        "full_head_tokens_per_s": round(tps["full_head"], 1),
        "logits_at_speedup": round(statistics.median(head_paired), 3),
        "diffusion_step_ms_median": round(1000 * statistics.median(times["diffusion"]), 1),
        "causal_lm_step_ms_median": round(1000 * statistics.median(times["causal_lm"]), 1),
    }
    print(f"{name}: {result}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    corpus = [inspect.getsource(m) for m in (json.decoder, json.encoder, textwrap, inspect, argparse)]
    tokenizer = train_tokenizer(corpus, vocab_size=4096)
    tiny = load_config("tiny").model.model_copy(update={"dtype": args.dtype})
    results = {}
    for name, (overrides, batch, seq_len, prompt_len) in SETUPS.items():
        cfg = tiny.model_copy(update=overrides)
        results[name] = bench_setup(name, cfg, tokenizer, batch, seq_len, prompt_len, args.repeats, device)
    worst = min(r["ratio"] for r in results.values())
    print(
        json.dumps(
            {
                "name": "model_train_step",
                "device": f"{device.type} ({torch.get_num_threads()} threads)"
                if device.type == "cpu"
                else torch.cuda.get_device_name(device),
                "config": {"repeats": args.repeats, "setups": list(SETUPS)},
                "metric": "min over setups of the median paired diffusion/causal-LM tokens-per-s ratio",
                "value": worst,
                "unit": "ratio",
                "target": 0.95,
                "results": results,
                "git_sha": git_sha(),
            }
        )
    )


if __name__ == "__main__":
    main()
