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
7. ``trained``: the speed/accuracy trade-off on trained models (``--models NAME=DIR ...``, e.g. a
   ``make run``'s instruct and GRPO models) over held-out tasks (``--tasks heldout.jsonl``): for each
   decoding variant of ``--variants``, decode tokens/s (the evaluation's batching, prompts sorted by
   length) and held-out pass@1 executed in the project sandbox, each with its paired difference
   (diffucoder.evaluation.paired) against the plain sampler at steps = L on the same tasks; the
   same-size causal Qwen2 with a KV cache on the same prompts as a second speed baseline; and the
   paper's finding (d) (arXiv 2506.20639 §5): the relative pass@1 drop from L to L/2 steps of each
   model, and its per-task paired change from the first model to the others. Skips the brief
   training of sections 1-6. ``--speed-repeats K`` then times every variant except the plain
   sampler K more times on the same prompts, each round one decode of every variant followed by
   the causal baseline, and reports the median tokens/s and the median of the per-round ratio to
   the causal baseline (load and clock drift then hit both sides of each ratio alike).

Timings alternate between variants across repeats so load from other processes hits all alike;
the median is reported. Prints one JSON object; progress goes to stderr.

    .venv/bin/python benchmarks/bench_decoding.py [--train-steps 300] [--gen-len 128] [--repeats 3]
        [--sections speed,arness,batching]
    .venv/bin/python benchmarks/bench_decoding.py --sections trained --tasks TASKS/heldout.jsonl
        --models instruct=RUN/instruct/final grpo=RUN/grpo/final [--variants plain-L,plain-L/2]
        [--set evaluation.gen_length=80 --set 'evaluation.temperatures=[0.7]' ...]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import git_sha
from transformers import Qwen2ForCausalLM

import diffucoder
from diffucoder.config import RunConfig, load_config
from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.decoding import DecodingConfig, diffusion_generate
from diffucoder.decoding.arness import global_arness, local_arness
from diffucoder.evaluation.benchmarks import load_benchmark
from diffucoder.evaluation.execution import combined_verdict, execute_candidates
from diffucoder.evaluation.generation import generate_completions
from diffucoder.evaluation.paired import paired_difference
from diffucoder.evaluation.prompts import build_prompt, code_from_completion, program_from_code
from diffucoder.evaluation.references import run_references
from diffucoder.evaluation.run import sandbox_url
from diffucoder.model import build_model, load_model
from diffucoder.train.objective import elbo_loss, forward_noise
from diffucoder.train.precision import CpuFeatures

TRAIN_MODULES = [
    "json.decoder", "json.encoder", "textwrap", "argparse", "dataclasses", "functools", "heapq", "bisect",
    "csv", "fractions", "shlex", "string", "calendar", "pprint", "difflib", "ast", "configparser",
    "tokenize", "gettext", "ipaddress",
]  # fmt: skip
PROMPT_MODULES = ["statistics", "colorsys", "fnmatch", "glob", "base64", "graphlib", "numbers", "keyword"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measured_commit() -> str:
    """The commit of the ``diffucoder`` measured: the checkout its imported package lives in, which
    is another tree's when ``PYTHONPATH`` points at it (the same-run baseline)."""
    return git_sha(Path(diffucoder.__file__).parent)


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


# The ``trained`` section's default variants; any name of the grammar in ``trained_variant`` works.
TRAINED_VARIANTS = (
    "plain-L,plain-L/2,plain-L/4,dual-b16-L,dual-b16-L/2,dual-b32-L/2,"
    "t0.9-none-b16,t0.7-none-b16,t0.9-dual-b16,t0.7-dual-b16,t0.5-dual-b16,t0.9-dual-b32"
)


def trained_variant(name: str, gen_len: int) -> dict:
    """A decoding variant of the ``trained`` section as a DecodingConfig update (L = ``gen_len``).

    Names: ``plain-L/k`` (the plain sampler at L/k steps; ``plain-L`` = one token per step) and
    ``[tTAU-]CACHE-bBLOCK[-L/k]``: fast decoding with threshold TAU (none without the ``t`` part),
    KV cache CACHE (none, prefix, dual), blocks of BLOCK tokens, at L/k steps (L without the suffix).
    """
    parts = name.split("-")
    steps = gen_len
    if parts[-1] == "L":
        parts.pop()
    elif parts[-1].startswith("L/"):
        steps = gen_len // int(parts.pop()[2:])
    if parts == ["plain"]:
        return dict(steps=steps)
    threshold = float(parts.pop(0)[1:]) if parts and parts[0].startswith("t") else None
    if len(parts) != 2 or parts[0] not in ("none", "prefix", "dual") or not parts[1].startswith("b"):
        raise SystemExit(
            f"unknown variant {name!r}: use plain-L[/k] or [tTAU-](none|prefix|dual)-bBLOCK[-L/k]"
        )
    fast = dict(enabled=True, threshold=threshold, block_length=int(parts[1][1:]), kv_cache=parts[0])
    return dict(steps=steps, fast=fast)


def causal_twin(model) -> Qwen2ForCausalLM:
    """Same-size causal Qwen2 with random weights (speed does not depend on them)."""
    return Qwen2ForCausalLM(
        model.hf.config.__class__(**{**model.hf.config.to_dict(), "use_cache": True})
    ).eval()


def causal_tokens_per_s(hf_causal, tokenizer, prompts: list[str], gen_len: int, batch: int) -> float:
    """HF ``generate`` with a KV cache, exactly ``gen_len`` new tokens per prompt, batched and
    left-padded like the evaluation."""
    seconds = 0.0
    with torch.no_grad():
        for start in range(0, len(prompts), batch):
            enc = tokenizer(
                prompts[start : start + batch], return_tensors="pt", padding=True, padding_side="left",
                add_special_tokens=False,
            )  # fmt: skip
            t0 = time.perf_counter()
            hf_causal.generate(
                **enc, max_new_tokens=gen_len, min_new_tokens=gen_len, do_sample=False, use_cache=True,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=None,
            )  # fmt: skip
            seconds += time.perf_counter() - t0
    return len(prompts) * gen_len / seconds


def interleaved_speed(
    model, tokenizer, prompts: list[str], decodings: dict[str, DecodingConfig], *, batch: int, repeats: int
) -> dict[str, dict]:
    """Median tokens/s of each decoding and of the causal baseline over ``repeats`` rounds, and the
    median per-round ratio of each decoding to the causal baseline."""
    hf_causal = causal_twin(model)
    gen_len = next(iter(decodings.values())).max_new_tokens
    speeds: dict[str, list[float]] = {name: [] for name in decodings}
    causal: list[float] = []
    for r in range(repeats):
        for name, decoding in decodings.items():
            _, seconds = generate_completions(
                model, tokenizer, prompts, decoding, batch_size=batch, generator=torch.Generator().manual_seed(r),
                return_trace=False,
            )  # fmt: skip
            speeds[name].append(len(prompts) * decoding.max_new_tokens / seconds)
        causal.append(causal_tokens_per_s(hf_causal, tokenizer, prompts, gen_len, batch))
        log(
            f"speed round {r}: "
            + ", ".join(f"{k} {v[-1]:.0f}" for k, v in speeds.items())
            + f", causal {causal[-1]:.0f}"
        )
    rows = {
        name: {
            "tokens_per_s_median": round(statistics.median(v), 1),
            "vs_causal_median": round(statistics.median(a / c for a, c in zip(v, causal, strict=True)), 3),
            "vs_causal_rounds": [round(a / c, 3) for a, c in zip(v, causal, strict=True)],
        }
        for name, v in speeds.items()
    }
    rows["causal Qwen2 + KV cache"] = {"tokens_per_s_median": round(statistics.median(causal), 1)}
    return rows


def bench_trained(
    cfg: RunConfig, models: dict[str, str], variant_names: list[str], batch: int, speed_repeats: int = 0
) -> dict:
    """tokens/s and held-out pass@1 per (model, decoding variant), paired against plain steps = L;
    with ``speed_repeats``, interleaved speed rounds against the causal baseline."""
    ev = cfg.evaluation
    variants = {name: trained_variant(name, ev.gen_length) for name in variant_names}
    problems = load_benchmark("tiny_heldout", ev)
    results: dict[str, dict] = {}
    passed: dict[str, dict[str, dict]] = {}
    from diffucoder.sandbox.client import SandboxClient

    with sandbox_url(cfg) as url, SandboxClient(url, cfg.sandbox) as client:
        references = run_references(problems, client, ev)
        for model_name, model_dir in models.items():
            model, tokenizer = load_model(model_dir)
            model.eval()
            prompts = [build_prompt(p, ev.prompt_style, ev.system_prompt, tokenizer) for p in problems]
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
            rows, passed[model_name], decodings = {}, {}, {}
            for name in variant_names:
                decoding = cfg.decoding.model_validate(
                    {**cfg.decoding.model_dump(), "max_new_tokens": ev.gen_length,
                     "temperature": ev.temperatures[0], **variants[name]}
                )  # fmt: skip
                decodings[name] = decoding
                generator = torch.Generator().manual_seed(cfg.seed + ev.seed_offset)
                decoded, seconds = generate_completions(
                    model, tokenizer, [prompts[i] for i in order], decoding,
                    batch_size=batch, generator=generator, return_trace=False,
                )  # fmt: skip
                texts = [""] * len(problems)
                for i, completion in zip(order, decoded, strict=True):
                    texts[i] = completion.text
                programs = [
                    program_from_code(p, code_from_completion(t, ev.prompt_style), ev.prompt_style)
                    for p, t in zip(problems, texts, strict=True)
                ]
                verdicts = execute_candidates(
                    list(zip(problems, programs, strict=True)), client, references, ev
                )
                key = {
                    p.task_id: float(combined_verdict(r)[0]) for p, r in zip(problems, verdicts, strict=True)
                }
                passed[model_name][name] = {("tiny_heldout", t, "", 0.0): v for t, v in key.items()}
                rows[name] = {
                    "tokens_per_s": round(len(problems) * ev.gen_length / seconds, 1),
                    "decode_s": round(seconds, 1),
                    "pass_at_1": round(sum(key.values()) / len(key), 3),
                }
                log(f"trained {model_name} {name}: {rows[name]}")
            ordered = [prompts[i] for i in order]
            causal = causal_tokens_per_s(causal_twin(model), tokenizer, ordered, ev.gen_length, batch)
            rows["causal Qwen2 + KV cache"] = {"tokens_per_s": round(causal, 1)}
            log(f"trained {model_name} causal: {causal:.1f} tok/s")
            timed = {k: v for k, v in decodings.items() if not k.startswith("plain")}
            if speed_repeats and timed:
                medians = interleaved_speed(
                    model, tokenizer, ordered, timed, batch=batch, repeats=speed_repeats
                )
                for name, row in medians.items():
                    rows[name].update(row)
            if "plain-L" in rows:
                base = rows["plain-L"]
                for name, row in rows.items():
                    row["speedup_vs_plain_L"] = round(row["tokens_per_s"] / base["tokens_per_s"], 2)
                    if name in passed[model_name] and name != "plain-L":
                        d = paired_difference(passed[model_name]["plain-L"], passed[model_name][name])
                        row["pass_at_1_change_vs_plain_L"] = d.describe()
            results[model_name] = {
                "model": model_dir,
                "dtype": str(next(model.parameters()).dtype),
                "variants": rows,
            }
    if all("plain-L" in v and "plain-L/2" in v for v in passed.values()):
        results["finding_d"] = finding_d(passed)
    return results


def finding_d(passed: dict[str, dict[str, dict]]) -> dict:
    """Paper finding (d): relative pass@1 drop from L to L/2 steps per model, and its paired change.

    The relative drop's SE is the paired SE of the absolute drop over pass@1 at L (pass@1 at L taken
    as exact); the change between models pairs the per-task drops of the first model and each other.
    """
    out: dict[str, object] = {}
    drops = {}
    for model_name, by_variant in passed.items():
        full, half = by_variant["plain-L"], by_variant["plain-L/2"]
        d = paired_difference(half, full)  # after - before = pass(L) - pass(L/2) = the drop
        drops[model_name] = {k: full[k] - half[k] for k in full}
        out[model_name] = {
            "pass_at_1_L": round(d.after, 3), "pass_at_1_L/2": round(d.before, 3),
            "drop": d.describe(),
            "relative_drop": f"{d.diff / d.after:+.3f} +- {d.se / d.after:.3f}" if d.after else None,
        }  # fmt: skip
    first, *others = list(drops)
    for other in others:
        out[f"drop change {first} -> {other}"] = paired_difference(drops[first], drops[other]).describe()
    return out


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
    parser.add_argument(
        "--sections",
        default="speed,arness,batching",
        help="comma-separated subset of speed,arness,batching,trained",
    )
    parser.add_argument("--models", nargs="*", default=[], help="trained: NAME=MODEL_DIR ...")
    parser.add_argument("--tasks", help="trained: held-out tasks (heldout.jsonl of the data stage)")
    parser.add_argument("--problems", type=int, default=200, help="trained: first N held-out tasks")
    parser.add_argument("--variants", default=TRAINED_VARIANTS, help="trained: comma-separated")
    parser.add_argument(
        "--trained-batch", type=int, default=8, help="trained: prompts per decode (evaluation's)"
    )
    parser.add_argument(
        "--speed-repeats",
        type=int,
        default=0,
        help="trained: interleaved speed rounds of the non-plain variants and the causal baseline",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="trained: a tiny-preset override, repeatable, e.g. --set 'evaluation.temperatures=[0.7]' "
        "--set evaluation.gen_length=80 (a GRPO rollout's temperature and length; L = evaluation.gen_length)",
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    machine = CpuFeatures.detect().describe()
    log(machine)

    cfg = load_config("tiny")
    if sections == {"trained"}:
        if not args.tasks or not args.models:
            raise SystemExit("--sections trained needs --tasks heldout.jsonl and --models NAME=DIR ...")
        cfg = load_config(
            "tiny",
            [
                f"evaluation.tiny_heldout_uri={args.tasks}",
                f"evaluation.max_problems={args.problems}",
                *args.set,
            ],
        )
        models = dict(item.split("=", 1) for item in args.models)
        trained = bench_trained(cfg, models, args.variants.split(","), args.trained_batch, args.speed_repeats)
        print(json.dumps({
            "name": "decoding_trained", "device": f"cpu ({args.threads} thread)", "machine": machine,
            "config": {**vars(args), "gen_length": cfg.evaluation.gen_length,
                       "temperature": cfg.evaluation.temperatures[0], "decoding": cfg.decoding.model_dump()},
            "git_sha": measured_commit(), "trained": trained,
        }, indent=1))  # fmt: skip
        return
    tokenizer = train_tokenizer(sources(TRAIN_MODULES), vocab_size=4096)
    model = build_model(cfg.model, tokenizer)
    train_start = time.perf_counter()
    losses = train(model, tokenizer, args.train_steps, seq_len=args.train_seq_len, batch=8)
    train_s = time.perf_counter() - train_start
    hf_causal = causal_twin(model)

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
        "machine": machine,
        "config": {**vars(args), "model": "tiny preset (hidden 256, 4 layers, vocab 4096)",
                   "train_ce_first_last": [round(losses[0], 3), round(sum(losses[-20:]) / len(losses[-20:]), 3)]
                   if losses else None,
                   "train_s": round(train_s, 1)},
        "metric": "fast_decoding_speedup_vs_plain_steps_L",
        "value": best,
        "unit": "x",
        "git_sha": measured_commit(),
        "speed": speed,
        "arness_vs_temperature": arness,
        "batched_vs_one_at_a_time": batching,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
