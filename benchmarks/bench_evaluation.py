"""Evaluation throughput on CPU: problems per second with generation excluded and included, and the
sandbox's share of the time. Prints one JSON object on stdout (logs on stderr).

- Execution only (generation excluded): reference solutions of HumanEval+, MBPP+ and MBPP subsets
  scored as candidates through a real local sandbox server (reference pass for expected outputs and
  time limits, then the candidate pass). Baseline in the same run: the same candidate jobs sent one
  request per job instead of batched.
- End to end (generation included): ``run_evaluation`` of an untrained tiny-preset model on the tiny
  held-out tasks plus the same benchmark subsets, with batched decoding; baseline: batch_size=1.

    .venv/bin/python benchmarks/bench_evaluation.py [--problems 20] [--gen-length 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import git_sha


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_execution(client, n_problems: int) -> dict:
    from diffucoder.evaluation.benchmarks import load_benchmark
    from diffucoder.evaluation.config import EvaluationConfig
    from diffucoder.evaluation.execution import (
        candidate_job,
        combined_verdict,
        execute_candidates,
        tier_names,
    )
    from diffucoder.evaluation.references import run_references

    cfg = EvaluationConfig(max_problems=n_problems)
    problems = [p for name in ("humaneval_plus", "mbpp_plus", "mbpp") for p in load_benchmark(name, cfg)]
    run_references(problems[:2], client, cfg)  # warm-up: executor slots started
    t0 = time.perf_counter()
    references = run_references(problems, client, cfg)
    t_ref = time.perf_counter() - t0
    items = [(p, p.reference) for p in problems]
    t0 = time.perf_counter()
    results = execute_candidates(items, client, references, cfg)
    t_batched = time.perf_counter() - t0
    assert all(combined_verdict(r)[0] for r in results), "a reference failed as a candidate"
    t0 = time.perf_counter()
    for problem, program in items:
        for tier in tier_names(problem):
            client.run(
                candidate_job(problem, tier, program, references[(problem.benchmark, problem.task_id)], cfg)
            )
    t_single = time.perf_counter() - t0
    return {
        "problems": len(problems),
        "io_inputs": sum(len(p.inputs) for p in problems),
        "reference_pass_s": t_ref,
        "candidate_pass_batched_s": t_batched,
        "candidate_pass_one_request_per_job_s": t_single,
        "problems_per_s_batched": len(problems) / t_batched,
        "problems_per_s_one_request_per_job": len(problems) / t_single,
        "problems_per_s_including_reference_pass": len(problems) / (t_ref + t_batched),
    }


def bench_end_to_end(sandbox_url: str, n_problems: int, gen_length: int, workdir: Path) -> dict:
    from diffucoder.config import load_config
    from diffucoder.data.formats import tasks_to_sft
    from diffucoder.data.tiny_tasks import generate_tasks
    from diffucoder.data.tokenizer import train_tokenizer
    from diffucoder.evaluation.run import run_evaluation
    from diffucoder.model import build_model, save_model

    torch.manual_seed(0)
    tasks = generate_tasks(seed=0, n_train=200, n_heldout=n_problems, difficulty=2)
    heldout = workdir / "heldout.jsonl"
    heldout.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tasks["heldout"]))
    texts = [m["content"] for row in tasks_to_sft(tasks["train"]) for m in row["messages"]]
    tokenizer = train_tokenizer(texts, vocab_size=1024)
    base = load_config("tiny")
    save_model(build_model(base.model, tokenizer), tokenizer, str(workdir / "model"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    benchmarks = ["tiny_heldout", "humaneval_plus", "mbpp_plus"]
    out = {}
    for label, batch in (("batched", 16), ("batch_size_1", 1)):
        cfg = load_config(
            "tiny",
            [
                f"evaluation.tiny_heldout_uri={heldout}",
                f"evaluation.max_problems={n_problems}",
                f"evaluation.gen_length={gen_length}",
                "evaluation.speeds=[1x]",
                f"evaluation.batch_size={batch}",
                f"sandbox.url={sandbox_url}",
            ],
        )
        result = run_evaluation(cfg, str(workdir / "model"), benchmarks, str(workdir / f"eval-{label}"))
        t = result.timings
        out[label] = {
            "problems": int(t["problems"]),
            "total_s": t["total_s"],
            "generation_s": t["generation_s"],
            "sandbox_s": t["sandbox_s"] + t["reference_s"],
            "problems_per_s": t["problems"] / t["total_s"],
            "problems_per_s_excluding_generation": t["problems"] / (t["total_s"] - t["generation_s"]),
            "sandbox_share": (t["sandbox_s"] + t["reference_s"]) / t["total_s"],
            "tokens_per_s": result.metrics.get("tokens_per_s_1x"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=20, help="problems per benchmark")
    parser.add_argument("--gen-length", type=int, default=32, help="tokens per completion (steps = length)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))

    from diffucoder.sandbox.client import SandboxClient
    from diffucoder.sandbox.config import SandboxConfig
    from diffucoder.sandbox.local import local_sandbox

    sandbox_cfg = SandboxConfig(workers=2, request_timeout_s=600)
    with (
        local_sandbox(sandbox_cfg) as url,
        SandboxClient(url, sandbox_cfg) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        log("execution-only pass ...")
        execution = bench_execution(client, args.problems)
        log("end-to-end pass ...")
        end_to_end = bench_end_to_end(url, args.problems, args.gen_length, Path(tmp))
    print(
        json.dumps(
            {
                "name": "evaluation_throughput",
                "device": f"cpu ({os.cpu_count()} cores), torch threads {torch.get_num_threads()}",
                "config": {
                    "problems_per_benchmark": args.problems,
                    "gen_length": args.gen_length,
                    "sandbox_workers": 2,
                },
                "metric": "problems_per_s_excluding_generation",
                "value": execution["problems_per_s_batched"],
                "unit": "problems/s",
                "baseline": execution["problems_per_s_one_request_per_job"],
                "execution_only": execution,
                "end_to_end": end_to_end,
                "git_sha": git_sha(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
