"""Coupled-GRPO estimator and cost benchmarks (issue 7).

1. Variance (the paper's antithetic-variates claim, App. A.4): for a fixed model and fixed
   completions (the tiny tasks' reference answers in the SFT chat format), the per-token log-prob
   estimate is redrawn under many mask seeds; coupled vs decoupled use the same 3 forward passes.
   Reported: mean per-token variance across seeds of each and their ratio (expected well below 1).
2. Bias: a high-sample Monte-Carlo reference of the coupled target
   (0.5 * log p_full + E[M log p(x_t) / t], t ~ U[0.2, 0.8], independent per draw) against the mean
   of the coupled estimates (should be ~0 within its standard error) and against d1's full-mask
   score (which is biased; reported overall and for the first vs second half of each completion).
3. Cost: one GRPO optimizer step (rollout of G completions per prompt + old/ref estimates + mu
   policy forward/backward passes) with ``coupled`` vs ``full_mask``, same rollouts, same model;
   target ratio <= 2.2.

Prints one JSON object; progress goes to stderr.

    .venv/bin/python benchmarks/bench_grpo.py --model runs/grpo-learn/instruct2/final \\
        --tasks runs/grpo-learn/data/tasks/sft/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import git_sha

from diffucoder.config import load_config
from diffucoder.model import load_model
from diffucoder.rl.estimators import estimate_logps, token_logps
from diffucoder.rl.loss import grpo_loss
from diffucoder.rl.rollout import Problem, completion_mask, encode_prompts, generate_rollouts


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fixed_rollouts(tokenizer, sft_uri: str, n: int, cfg):
    """(sequences, prompt_valid, prompt_len, completion_mask) of n reference answers, left-padded prompts."""
    rows = [json.loads(line) for line in Path(sft_uri).read_text().splitlines()[:n]]
    problems = [Problem(r["id"], r["messages"][0]["content"], ["pass"]) for r in rows]
    ids, attention = encode_prompts(problems, tokenizer, cfg.grpo.rollout)
    answers = [
        tokenizer(r["messages"][1]["content"] + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        for r in rows
    ]
    width = max(len(a) for a in answers)
    comp = torch.full((n, width), tokenizer.pad_token_id, dtype=torch.long)
    for i, a in enumerate(answers):
        comp[i, : len(a)] = torch.tensor(a)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return torch.cat([ids, comp], 1), attention.bool(), ids.shape[1], completion_mask(comp, im_end)


@torch.no_grad()
def estimator_stats(model, seqs, valid, p, cmask, seeds: int, mc_draws: int) -> dict:
    mask_id = model.mask_token_id
    draws = {
        name: torch.stack(
            [
                estimate_logps(
                    model,
                    seqs,
                    p,
                    valid,
                    mask_token_id=mask_id,
                    estimator=name,
                    generator=torch.Generator().manual_seed(s),
                )
                for s in range(seeds)
            ]
        )
        for name in ("coupled", "decoupled")
    }
    log(f"estimates: {seeds} seeds x 2 estimators done")
    var = {name: float(d.var(0)[cmask].mean()) for name, d in draws.items()}
    # Monte-Carlo reference with independent (t, M) per draw
    g = torch.Generator().manual_seed(12345)
    full = estimate_logps(model, seqs, p, valid, mask_token_id=mask_id, estimator="full_mask", generator=g)
    acc = torch.zeros_like(full)
    for _ in range(mc_draws):
        t = 0.2 + 0.6 * torch.rand(seqs.shape[0], 1, generator=g)
        m = torch.rand(full.shape, generator=g) < t
        noisy = seqs.clone()
        noisy[:, p:] = noisy[:, p:].masked_fill(m, mask_id)
        acc += m * token_logps(model, noisy, seqs, p, valid) / t
    reference = 0.5 * full + acc / mc_draws
    log(f"MC reference: {mc_draws} draws done")
    coupled_mean = draws["coupled"].mean(0)
    sem = draws["coupled"].std(0) / seeds**0.5
    lengths = cmask.sum(1)
    first_half = torch.arange(cmask.shape[1])[None] < (lengths[:, None] / 2)
    d1_err = full - reference
    return {
        "var_coupled": var["coupled"],
        "var_decoupled": var["decoupled"],
        "var_ratio_coupled_over_decoupled": var["coupled"] / var["decoupled"],
        "coupled_bias_mean": float((coupled_mean - reference)[cmask].mean()),
        "coupled_abs_err_over_sem_median": float(
            ((coupled_mean - reference).abs() / sem.clamp(min=1e-9))[cmask].median()
        ),
        "d1_bias_mean": float(d1_err[cmask].mean()),
        "d1_abs_err_mean": float(d1_err.abs()[cmask].mean()),
        "d1_bias_first_half": float(d1_err[cmask & first_half].mean()),
        "d1_bias_second_half": float(d1_err[cmask & ~first_half].mean()),
        "reference_mean": float(reference[cmask].mean()),
        "scored_tokens": int(cmask.sum()),
    }


def step_time(model, tokenizer, problems, cfg, estimator: str, rollouts) -> dict:
    """One optimizer step on given rollouts: old + ref estimates (no grad), mu x (forward + backward)."""
    g = cfg.grpo
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    adv = torch.randn(rollouts.sequences.shape[0])

    def estimate(iteration: int) -> torch.Tensor:
        return estimate_logps(
            model,
            rollouts.sequences,
            rollouts.prompt_len,
            rollouts.prompt_valid,
            mask_token_id=model.mask_token_id,
            estimator=estimator,
            generator=torch.Generator().manual_seed(iteration),
        )

    start = time.perf_counter()
    with torch.no_grad():
        olds = [estimate(i) for i in range(g.num_iterations)]
        refs = [estimate(i) for i in range(g.num_iterations)]
    for i in range(g.num_iterations):
        logp = estimate(i)
        loss, _ = grpo_loss(
            logp,
            olds[i],
            refs[i],
            adv,
            rollouts.completion_mask,
            epsilon_low=0.5,
            epsilon_high=0.5,
            beta=0.01,
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
    return {"estimate_update_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--model", required=True, help="a stage-3 model dir (e.g. runs/grpo-learn/instruct2/final)"
    )
    parser.add_argument("--tasks", required=True, help="SFT JSONL of the tiny tasks (fixed completions)")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--mc-draws", type=int, default=2000)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config("tiny")
    model, tokenizer = load_model(args.model)
    model.eval()
    seqs, valid, p, cmask = fixed_rollouts(tokenizer, args.tasks, args.sequences, cfg)
    stats = estimator_stats(model, seqs, valid, p, cmask, args.seeds, args.mc_draws)

    problems = [
        Problem(f"p{i}", json.loads(line)["messages"][0]["content"], ["pass"])
        for i, line in enumerate(Path(args.tasks).read_text().splitlines()[: args.prompts])
    ]
    timings = {"coupled": [], "full_mask": []}
    rollout_s = []
    for r in range(args.repeats):
        start = time.perf_counter()
        rollouts = generate_rollouts(
            model,
            tokenizer,
            problems,
            cfg.grpo.num_generations,
            cfg.grpo.rollout,
            cfg.decoding,
            torch.Generator().manual_seed(r),
        )
        rollout_s.append(time.perf_counter() - start)
        model.train()
        for name in ("coupled", "full_mask") if r % 2 == 0 else ("full_mask", "coupled"):
            timings[name].append(
                step_time(model, tokenizer, problems, cfg, name, rollouts)["estimate_update_s"]
            )
        model.eval()
        log(
            f"repeat {r}: rollout {rollout_s[-1]:.1f}s, coupled {timings['coupled'][-1]:.2f}s, full_mask {timings['full_mask'][-1]:.2f}s"
        )
    roll = statistics.median(rollout_s)
    coupled = statistics.median(timings["coupled"])
    full = statistics.median(timings["full_mask"])
    print(
        json.dumps(
            {
                "name": "grpo",
                "device": "cpu",
                "config": {
                    "model": args.model,
                    "sequences": args.sequences,
                    "seeds": args.seeds,
                    "mc_draws": args.mc_draws,
                    "prompts": args.prompts,
                    "G": cfg.grpo.num_generations,
                    "L": cfg.grpo.rollout.max_completion_length,
                    "mu": cfg.grpo.num_iterations,
                    "threads": 1,
                },
                "metric": "var_ratio_coupled_over_decoupled",
                "value": stats["var_ratio_coupled_over_decoupled"],
                "unit": "ratio",
                "estimators": stats,
                "cost": {
                    "rollout_s": roll,
                    "coupled_estimate_update_s": coupled,
                    "full_mask_estimate_update_s": full,
                    "step_time_coupled_s": roll + coupled,
                    "step_time_full_mask_s": roll + full,
                    "step_time_ratio": (roll + coupled) / (roll + full),
                    "estimate_update_ratio": coupled / full,
                },
                "git_sha": git_sha(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
