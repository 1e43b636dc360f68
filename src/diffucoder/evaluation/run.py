"""The evaluation stage: ``run_evaluation(cfg, model_uri, benchmarks, out_uri) -> EvalResult``, and
``score_samples(cfg, samples_uri, out_uri)`` for completions produced elsewhere.

Order (fail fast): load every benchmark, get every reference (from the reference cache, else run in
the sandbox: expected outputs + time limits; a broken reference stops the run before any decoding),
load the model, then for each (speed, temperature) grid point decode ``n_samples`` completions per
problem, execute them in the sandbox and score them. ``score_samples`` replaces model and decoding by
a samples file and shares everything after. Outputs under ``out_uri``: ``per_problem.jsonl`` (one row
per problem and grid point, for run-to-run diffs), ``metrics.json`` (flat metrics + timings),
``report.html`` and ``config.yaml`` (+ EvalPlus's ``eval_results.json`` for a samples file); metrics
also go to the stage's MLflow run. The KFP component emits ``metrics.json`` as KFP Metrics.

torch, the decoding code and tqdm are imported by the functions that decode, so scoring a samples
file (``diffucoder evaluate --samples``) never loads them: a few seconds of start-up per run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from diffucoder.config import RunConfig
from diffucoder.evaluation.benchmarks import Problem, load_benchmark
from diffucoder.evaluation.execution import combined_verdict, execute_candidates, failing_test, problem_key
from diffucoder.evaluation.metrics import SAMPLES, ProblemResult, SampleResult, aggregate, tracked_metrics
from diffucoder.evaluation.prompts import build_prompt, code_from_completion, program_from_code
from diffucoder.evaluation.references import ReferenceCache, run_references
from diffucoder.evaluation.report import render_report

if TYPE_CHECKING:
    import torch

    from diffucoder.tracking import NullTracker, Tracker

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
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _arness(trace: list[int] | None, cfg: RunConfig) -> tuple[dict[int, float], dict[int, float]]:
    if not trace:
        return {}, {}
    import torch

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
    *,
    client,
    references,
    speed: str,
    temperature: float,
    generator: torch.Generator,
) -> tuple[list[ProblemResult], float, float]:
    """Decode, execute and score every problem at one grid point; returns results and the seconds of
    decoding and of sandbox execution."""
    from tqdm.auto import tqdm

    from diffucoder.evaluation.generation import decoding_config_for, generate_completions

    ev = cfg.evaluation
    items = [p for p in problems for _ in range(ev.n_samples)]
    # Decode similar-length prompts together: less left padding, same results (order restored below).
    prompts = [build_prompt(p, ev.prompt_style, ev.system_prompt, tokenizer) for p in items]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    decoding = decoding_config_for(cfg.decoding, ev, speed, temperature)
    desc = f"decode {problems[0].benchmark} {speed} T={temperature:g}"
    with tqdm(total=len(prompts), desc=desc, leave=False) as bar:
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
    outcomes = execute_candidates(list(zip(items, programs, strict=True)), client, references, ev)
    sandbox_seconds = time.perf_counter() - t0

    grouped: dict[tuple[str, str], list[SampleResult]] = {}
    for problem, completion, program, tiers in zip(items, completions, programs, outcomes, strict=True):
        local, global_ = _arness(completion.trace, cfg)
        sample = sample_result(problem, completion.text, program, tiers)
        sample.gen_tokens, sample.arness_local, sample.arness_global = ev.gen_length, local, global_
        sample.trace = completion.trace
        grouped.setdefault(problem_key(problem), []).append(sample)
    results = [
        ProblemResult(p.benchmark, p.task_id, speed, temperature, grouped[problem_key(p)], prompt=p.prompt)
        for p in problems
    ]
    return results, gen_seconds, sandbox_seconds


def sample_result(problem: Problem, completion: str, program: str, tiers: dict) -> SampleResult:
    """A sample's result from its outcome per tier (see execution.execute_candidates)."""
    passed, verdict = combined_verdict(tiers)
    infra = next((t.infra_error for t in tiers.values() if t.infra_error), None)
    test, error = failing_test(problem, tiers)
    return SampleResult(
        completion=completion,
        program=program,
        passed=passed,
        verdict="infra_error" if infra else verdict,
        n_passed=sum(t.n_passed for t in tiers.values()),
        n_tests=sum(t.n_tests for t in tiers.values()),
        infra_error=infra,
        tiers={name: t.status for name, t in tiers.items()},
        failing_test=test,
        error=error,
    )


def _write_outputs(cfg: RunConfig, out_uri: str, metrics, timings, texts: dict[str, str]) -> dict[str, str]:
    """Write ``texts`` (file name -> content) and config.yaml, then metrics.json last: its presence
    marks a complete evaluation output."""
    from diffucoder import storage

    files = {name: storage.join(out_uri, name) for name in [*texts, "config.yaml", "metrics.json"]}
    for name, text in texts.items():
        storage.write_text(files[name], text)
    storage.write_text(files["config.yaml"], cfg.to_yaml())
    storage.write_text(
        files["metrics.json"], json.dumps({"metrics": metrics, "timings": timings}, indent=2, sort_keys=True)
    )
    return {name.split(".")[0]: uri for name, uri in files.items()}


def reference_cache(cfg: RunConfig, out_uri: str) -> ReferenceCache:
    from diffucoder import storage

    return ReferenceCache(cfg.evaluation.reference_cache_uri or storage.join(out_uri, "reference_cache"))


@contextlib.contextmanager
def _sandbox_and_references(cfg: RunConfig, problems: list[Problem], out_uri: str, timings: dict[str, float]):
    """A sandbox client and every problem's reference (cached or run; ``timings["reference_s"]``)."""
    from diffucoder.sandbox.client import SandboxClient

    with sandbox_url(cfg) as url, SandboxClient(url, cfg.sandbox) as client:
        t0 = time.perf_counter()
        references = run_references(problems, client, cfg.evaluation, reference_cache(cfg, out_uri))
        timings["reference_s"] = time.perf_counter() - t0
        yield client, references


def _load_problems(cfg: RunConfig, names: list[str]) -> list[Problem]:
    return [p for name in names for p in load_benchmark(name, cfg.evaluation)]


@contextlib.contextmanager
def _evaluation_run(
    cfg: RunConfig,
    names: list[str],
    *,
    parent_run_id: str | None,
    label: str | None,
    run_tags: dict[str, str],
) -> Iterator[Tracker | NullTracker]:
    """The evaluation's MLflow run, open for the whole evaluation (its duration is the evaluation's,
    and it shows as running meanwhile; an error ends it FAILED), with the benchmark files as inputs.

    The run is ``evaluate-<label>`` when ``label`` names what is scored, tagged
    ``diffucoder.scored_stage``.
    """
    from diffucoder import tracking
    from diffucoder.evaluation.benchmarks import benchmark_uri

    tracking.configure(cfg.tracking)
    stage = f"evaluate-{label}" if label else "evaluate"
    tags = {**run_tags, **({"diffucoder.scored_stage": label} if label else {})}
    with tracking.stage_run(stage, cfg, parent_run_id=parent_run_id, tags=tags, metric_group="eval") as tr:
        for name in names:
            tr.log_dataset(benchmark_uri(name, cfg.evaluation), name=name, context="evaluation")
        yield tr


def _publish(
    cfg: RunConfig,
    out_uri: str,
    tracker: Tracker | NullTracker,
    *,
    title: str,
    names: list[str],
    results: list[ProblemResult],
    gen_seconds: dict[str, float],
    timings: dict[str, float],
    notes: dict[str, str],
    extra_files: dict[str, str],
    parent_run_id: str | None,
    label: str | None = None,
) -> EvalResult:
    """Metrics, report, output files and MLflow: everything after the samples are scored.

    When ``label`` names what was scored, its pass@1 scores also go on the parent run
    (``tracking.log_headline_metrics``).
    """
    from diffucoder import tracking

    ev = cfg.evaluation
    metrics = aggregate(results, ev.pass_k, gen_seconds)
    timings["problems"] = float(len({(r.benchmark, r.task_id) for r in results}))
    timings["samples"] = float(sum(r.n for r in results))
    speeds = sorted({r.speed for r in results}, key=lambda s: (s == SAMPLES, s))
    report_html = render_report(
        metrics,
        results,
        title=title,
        benchmarks=names,
        speeds=speeds,
        temperatures=[] if speeds == [SAMPLES] else ev.temperatures,
        ks=ev.pass_k,
        heatmap_problems=ev.heatmap_problems,
        failure_limit=ev.report_failures,
        notes={
            **notes,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": tracking.git_sha() or "unknown",
            "config fingerprint": cfg.fingerprint(),
            **tracker.describe(),
        },
        timings=timings,
    )
    per_problem = "".join(json.dumps(r.to_row(ev.pass_k)) + "\n" for r in results)
    texts = {"per_problem.jsonl": per_problem, "report.html": report_html, **extra_files}
    files = _write_outputs(cfg, out_uri, metrics, timings, texts)

    tracked = tracked_metrics(metrics, names)
    tracker.log_metrics({**tracked.scalars, **{f"time/{k}": v for k, v in timings.items()}})
    for name, points in tracked.curves.items():
        tracker.log_curve(name, points)
    tracker.log_text(report_html, "evaluation/report.html")
    tracker.log_text(per_problem, "evaluation/per_problem.jsonl")
    if label:
        tracking.log_headline_metrics(parent_run_id, label, metrics, speed=speeds[0], cfg=cfg.tracking)
    return EvalResult(metrics, results, out_uri, files, timings, tracker.run_id)


def run_evaluation(
    cfg: RunConfig,
    model_uri: str,
    benchmarks: list[str] | None,
    out_uri: str,
    *,
    parent_run_id: str | None = None,
    label: str | None = None,
) -> EvalResult:
    """Evaluate the model at ``model_uri`` on ``benchmarks`` (default ``cfg.evaluation.benchmarks``).

    ``label`` names what is scored (the pipeline passes the stage, e.g. ``instruct``): the MLflow
    run is then ``evaluate-<label>``, and its pass@1 scores also go on the parent run.

    Raises:
        FileNotFoundError / BenchmarkFormatError: a benchmark file is missing or malformed.
        ReferenceFailure: a reference solution failed in the sandbox (before any decoding).
        SandboxUnavailable: the sandbox service could not be reached.
    """
    import torch

    from diffucoder.heap import retain_freed_memory
    from diffucoder.model import load_model

    retain_freed_memory()  # decoding re-allocates the same activations every step (diffucoder.heap)
    ev = cfg.evaluation
    names = list(benchmarks or ev.benchmarks)
    t_start = time.perf_counter()
    timings = {"generation_s": 0.0, "sandbox_s": 0.0}
    results: list[ProblemResult] = []
    gen_seconds: dict[str, float] = {}
    tags = {"diffucoder.model_uri": model_uri}
    with _evaluation_run(cfg, names, parent_run_id=parent_run_id, label=label, run_tags=tags) as tracker:
        problems = _load_problems(cfg, names)
        log.info("evaluating %s on %d problems (%s)", model_uri, len(problems), ", ".join(names))
        with _sandbox_and_references(cfg, problems, out_uri, timings) as (client, references):
            model, tokenizer = load_model(model_uri, device=_device(cfg))
            model.eval()
            by_benchmark = {name: [p for p in problems if p.benchmark == name] for name in names}
            for speed, temperature, name in itertools.product(ev.speeds, ev.temperatures, names):
                # Each benchmark decodes at each grid point from a generator seeded alike, so its
                # samples do not depend on which other benchmarks, speeds or temperatures the run
                # also evaluates: a score compares across runs that evaluate different sets, and two
                # models are compared on the same draws.
                generator = torch.Generator(device=_device(cfg)).manual_seed(cfg.seed + ev.seed_offset)
                point, g_s, s_s = _grid_point(
                    cfg,
                    model,
                    tokenizer,
                    by_benchmark[name],
                    client=client,
                    references=references,
                    speed=speed,
                    temperature=temperature,
                    generator=generator,
                )
                results.extend(point)
                gen_seconds[speed] = gen_seconds.get(speed, 0.0) + g_s
                timings["generation_s"] += g_s
                timings["sandbox_s"] += s_s
        timings["total_s"] = time.perf_counter() - t_start
        return _publish(
            cfg,
            out_uri,
            tracker,
            title=f"DiffuCoder evaluation: {label or 'model'}",
            names=names,
            results=results,
            gen_seconds=gen_seconds,
            timings=timings,
            notes={
                "stage": label or "(not from a pipeline)",
                "model": model_uri,
                "prompt style": ev.prompt_style,
                "gen length": str(ev.gen_length),
                "samples per problem": str(ev.n_samples),
                "fast decoding": str(ev.fast_decoding),
            },
            extra_files={},
            parent_run_id=parent_run_id,
            label=label,
        )


SAMPLES_BENCHMARKS = {"humaneval": ["humaneval", "humaneval_plus"], "mbpp": ["mbpp_plus"]}


def score_samples(
    cfg: RunConfig,
    samples_uri: str,
    out_uri: str,
    benchmarks: list[str] | None = None,
    *,
    parent_run_id: str | None = None,
) -> EvalResult:
    """Score an EvalPlus samples file (completions produced elsewhere) as ``run_evaluation`` scores
    decoded ones, and write EvalPlus's ``eval_results.json`` beside the usual outputs.

    ``benchmarks`` default to the samples' dataset: ``humaneval,humaneval_plus`` for HumanEval+ task
    ids, ``mbpp_plus`` for MBPP+.

    Raises:
        SamplesError: a malformed line, a line without solution/completion, an unknown task id, a
            task without samples, or samples of another dataset than ``benchmarks``.
    """
    from diffucoder.evaluation.benchmarks import data_task_ids, evalplus_data_file
    from diffucoder.evaluation.samples import (
        SamplesError,
        evalplus_results,
        match_samples,
        read_samples,
        samples_dataset,
    )

    ev = cfg.evaluation
    t_start = time.perf_counter()
    samples = read_samples(samples_uri)
    dataset = samples_dataset(samples, samples_uri)
    names = list(benchmarks or SAMPLES_BENCHMARKS[dataset])
    foreign = [n for n in names if n not in SAMPLES_BENCHMARKS[dataset]]
    if foreign:
        raise SamplesError(
            f"{samples_uri} holds {dataset} samples; benchmark(s) {foreign} cannot score them "
            f"(choose from {SAMPLES_BENCHMARKS[dataset]})"
        )
    problems = _load_problems(cfg, names)
    data = evalplus_data_file(dataset, ev)
    known = data_task_ids(data)
    matched = {
        name: match_samples(
            samples, [p for p in problems if p.benchmark == name], samples_uri, known_task_ids=known
        )
        for name in names
    }
    items = [(p, s) for p in problems for s in matched[p.benchmark][p.task_id]]
    log.info(
        "scoring %d samples of %s on %d problems (%s)",
        len(samples),
        samples_uri,
        len(problems),
        ", ".join(names),
    )
    timings: dict[str, float] = {}
    tags = {"diffucoder.samples_uri": samples_uri}
    with _evaluation_run(cfg, names, parent_run_id=parent_run_id, label=None, run_tags=tags) as tracker:
        tracker.log_dataset(samples_uri, name="samples", context="evaluation")
        with _sandbox_and_references(cfg, problems, out_uri, timings) as (client, references):
            t0 = time.perf_counter()
            outcomes = execute_candidates([(p, s.program(p)) for p, s in items], client, references, ev)
            timings["sandbox_s"] = time.perf_counter() - t0
        grouped: dict[tuple[str, str], list[SampleResult]] = {}
        for (problem, sample), tiers in zip(items, outcomes, strict=True):
            text = sample.solution if sample.solution is not None else sample.completion or ""
            grouped.setdefault(problem_key(problem), []).append(
                sample_result(problem, text, sample.program(problem), tiers)
            )
        results = [
            ProblemResult(p.benchmark, p.task_id, SAMPLES, None, grouped[problem_key(p)], prompt=p.prompt)
            for p in problems
        ]
        # EvalPlus's results file: the widest benchmark (plus tiers included when scored)
        widest = max(names, key=lambda n: n.endswith("_plus"))
        rows = [(p, s, t) for (p, s), t in zip(items, outcomes, strict=True) if p.benchmark == widest]
        eval_results = evalplus_results(rows, data.md5, base_only=not widest.endswith("_plus"))
        timings["total_s"] = time.perf_counter() - t_start
        return _publish(
            cfg,
            out_uri,
            tracker,
            title=f"Evaluation of samples {samples_uri}",
            names=names,
            results=results,
            gen_seconds={},
            timings=timings,
            notes={"samples": samples_uri},
            extra_files={"eval_results.json": json.dumps(eval_results)},
            parent_run_id=parent_run_id,
        )
