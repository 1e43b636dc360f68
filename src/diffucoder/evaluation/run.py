"""The evaluation stage: ``run_evaluation(cfg, model_uri, benchmarks, out_uri) -> EvalResult``.

Order (fail fast): load every benchmark, run every reference solution in the
sandbox (expected outputs + time limits; a broken reference stops the run before any decoding),
load the model, then for each (speed, temperature) grid point decode ``n_samples`` completions per
problem, execute them in the sandbox and score them. Outputs under ``out_uri``:
``per_problem.jsonl`` (one row per problem and grid point, for run-to-run diffs), ``metrics.json``
(flat metrics + timings), ``report.html`` and ``config.yaml``; metrics also go to the stage's MLflow
run. The KFP component emits ``metrics.json`` as KFP Metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from diffucoder.config import RunConfig
from diffucoder.evaluation.benchmarks import Problem, load_benchmark
from diffucoder.evaluation.execution import execute_candidates, problem_key, run_references, verdict_of
from diffucoder.evaluation.generation import decoding_config_for, generate_completions
from diffucoder.evaluation.metrics import ProblemResult, SampleResult, aggregate
from diffucoder.evaluation.prompts import build_prompt, code_from_completion, program_from_code
from diffucoder.evaluation.report import render_report

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """What one evaluation produced: metrics, per-problem results, where the files went, timings."""

    metrics: dict[str, float]
    results: list[ProblemResult]
    out_uri: str
    files: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None


@contextlib.contextmanager
def sandbox_url(cfg: RunConfig) -> Iterator[str]:
    """The configured sandbox service, or a local sandbox subprocess for the duration of the run."""
    if cfg.sandbox.url:
        yield cfg.sandbox.url
        return
    from diffucoder.sandbox.local import local_sandbox

    with local_sandbox(cfg.sandbox) as url:
        yield url


def _device(cfg: RunConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _arness(trace: list[int] | None, cfg: RunConfig) -> tuple[dict[int, float], dict[int, float]]:
    if not trace:
        return {}, {}
    from diffucoder.decoding.arness import global_arness, local_arness

    ev = cfg.evaluation
    steps = torch.tensor(trace)
    return (
        {k: float(local_arness(steps, k)) for k in ev.arness_local_ks},
        {k: float(global_arness(steps, k)) for k in ev.arness_global_ks},
    )


def _grid_point(
    cfg: RunConfig,
    model,
    tokenizer,
    problems: list[Problem],
    client,
    references,
    speed: str,
    temperature: float,
    generator: torch.Generator,
) -> tuple[list[ProblemResult], float, float]:
    """Decode, execute and score every problem at one grid point; returns results and the seconds of
    decoding and of sandbox execution."""
    ev = cfg.evaluation
    items = [p for p in problems for _ in range(ev.n_samples)]
    # Decode similar-length prompts together: less left padding, same results (order restored below).
    prompts = [build_prompt(p, ev.prompt_style, ev.system_prompt, tokenizer) for p in items]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    decoding = decoding_config_for(cfg.decoding, ev, speed, temperature)
    with tqdm(total=len(prompts), desc=f"decode {speed} T={temperature:g}", leave=False) as bar:
        decoded, gen_seconds = generate_completions(
            model,
            tokenizer,
            [prompts[i] for i in order],
            decoding,
            batch_size=ev.batch_size,
            generator=generator,
            return_trace=True,
            progress=bar,
        )
    completions = [None] * len(items)
    for i, completion in zip(order, decoded, strict=True):
        completions[i] = completion

    programs = [
        program_from_code(p, code_from_completion(c.text, ev.prompt_style), ev.prompt_style)
        for p, c in zip(items, completions, strict=True)
    ]
    t0 = time.perf_counter()
    job_results = execute_candidates(list(zip(items, programs, strict=True)), client, references, ev)
    sandbox_seconds = time.perf_counter() - t0

    grouped: dict[tuple[str, str], list[SampleResult]] = {}
    for problem, completion, program, result in zip(items, completions, programs, job_results, strict=True):
        passed, verdict = verdict_of(result)
        local, global_ = _arness(completion.trace, cfg)
        grouped.setdefault(problem_key(problem), []).append(
            SampleResult(
                completion=completion.text,
                program=program,
                passed=passed,
                verdict=verdict,
                n_passed=result.passed,
                n_tests=result.total,
                infra_error=result.infra_error,
                gen_tokens=ev.gen_length,
                arness_local=local,
                arness_global=global_,
                trace=completion.trace,
            )
        )
    results = [
        ProblemResult(p.benchmark, p.task_id, speed, temperature, grouped[problem_key(p)]) for p in problems
    ]
    return results, gen_seconds, sandbox_seconds


def _write_outputs(
    cfg: RunConfig, out_uri: str, metrics, timings, per_problem: str, report_html: str
) -> dict[str, str]:
    from diffucoder import storage

    files = {
        "per_problem": storage.join(out_uri, "per_problem.jsonl"),
        "metrics": storage.join(out_uri, "metrics.json"),
        "report": storage.join(out_uri, "report.html"),
        "config": storage.join(out_uri, "config.yaml"),
    }
    storage.write_text(files["per_problem"], per_problem)
    storage.write_text(files["report"], report_html)
    storage.write_text(files["config"], cfg.to_yaml())
    # metrics.json last: its presence marks a complete evaluation output.
    storage.write_text(
        files["metrics"], json.dumps({"metrics": metrics, "timings": timings}, indent=2, sort_keys=True)
    )
    return files


def run_evaluation(
    cfg: RunConfig,
    model_uri: str,
    benchmarks: list[str] | None,
    out_uri: str,
    *,
    parent_run_id: str | None = None,
) -> EvalResult:
    """Evaluate the model at ``model_uri`` on ``benchmarks`` (default ``cfg.evaluation.benchmarks``).

    Raises:
        FileNotFoundError / BenchmarkFormatError: a benchmark file is missing or malformed.
        ReferenceFailure: a reference solution failed in the sandbox (before any decoding).
        SandboxUnavailable: the sandbox service could not be reached.
    """
    from diffucoder import tracking
    from diffucoder.heap import retain_freed_memory
    from diffucoder.model import load_model
    from diffucoder.sandbox.client import SandboxClient

    retain_freed_memory()  # decoding re-allocates the same activations every step (diffucoder.heap)
    ev = cfg.evaluation
    names = list(benchmarks or ev.benchmarks)
    t_start = time.perf_counter()
    problems = [p for name in names for p in load_benchmark(name, ev)]
    log.info("evaluating %s on %d problems (%s)", model_uri, len(problems), ", ".join(names))
    timings = {"generation_s": 0.0, "sandbox_s": 0.0}
    results: list[ProblemResult] = []
    gen_seconds: dict[str, float] = {}
    with sandbox_url(cfg) as url:
        client = SandboxClient(url, cfg.sandbox)
        t0 = time.perf_counter()
        references = run_references(problems, client, ev)
        timings["reference_s"] = time.perf_counter() - t0
        model, tokenizer = load_model(model_uri, device=_device(cfg))
        model.eval()
        generator = torch.Generator(device=_device(cfg)).manual_seed(cfg.seed + ev.seed_offset)
        for speed in ev.speeds:
            for temperature in ev.temperatures:
                point, g_s, s_s = _grid_point(
                    cfg, model, tokenizer, problems, client, references, speed, temperature, generator
                )
                results.extend(point)
                gen_seconds[speed] = gen_seconds.get(speed, 0.0) + g_s
                timings["generation_s"] += g_s
                timings["sandbox_s"] += s_s
    metrics = aggregate(results, ev.pass_k, gen_seconds)
    timings["total_s"] = time.perf_counter() - t_start
    timings["problems"] = float(len(problems))
    timings["samples"] = float(sum(r.n for r in results))
    report_html = render_report(
        metrics,
        results,
        title=f"DiffuCoder evaluation: {model_uri}",
        benchmarks=names,
        speeds=ev.speeds,
        temperatures=ev.temperatures,
        ks=ev.pass_k,
        heatmap_problems=ev.heatmap_problems,
        failure_limit=ev.report_failures,
        notes={
            "model": model_uri,
            "prompt style": ev.prompt_style,
            "gen length": str(ev.gen_length),
            "samples per problem": str(ev.n_samples),
            "fast decoding": str(ev.fast_decoding),
            "config fingerprint": cfg.fingerprint(),
        },
    )
    per_problem = "".join(json.dumps(r.to_row(ev.pass_k)) + "\n" for r in results)
    files = _write_outputs(cfg, out_uri, metrics, timings, per_problem, report_html)

    tracking.configure(cfg.tracking)
    with tracking.stage_run("evaluate", cfg, parent_run_id=parent_run_id) as tr:
        tr.log_metrics({**metrics, **{f"time_{k}": v for k, v in timings.items()}})
        tr.log_text(report_html, "evaluation/report.html")
        tr.log_text(per_problem, "evaluation/per_problem.jsonl")
        run_id = tr.run_id
    return EvalResult(metrics, results, out_uri, files, timings, run_id)
