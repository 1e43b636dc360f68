"""Running references and candidates through the sandbox service with EvalPlus semantics.

Plan (EvalPlus's ``evalplus/evaluate.py``, with the sandbox service in place of its process pool):
1. Reference pass: every problem's reference program runs once in the sandbox, on the same jobs
   the candidates will get. For io problems (HumanEval+, MBPP+) the job asks for outputs
   (``expected=None``), which become the expected values; for asserts problems (MBPP, tiny) the
   reference must pass its own tests. A reference that fails is a data problem and is reported,
   never silently scored.
2. Time limits (EvalPlus): each test gets ``time_limit_factor`` x the reference's time on it, at
   least ``min_time_limit_s``; the job's wall-clock cap is the sum, at most ``max_time_limit_s``
   (but never below factor x the reference's own job time).
3. Candidate pass: one job per (problem, sample); the verdicts, pass count and any infrastructure
   error come back per sample. An infrastructure error is kept apart from a failing program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffucoder.evaluation.benchmarks import Problem
from diffucoder.evaluation.config import EvaluationConfig
from diffucoder.evaluation.oracles import ENTRY_NAME, entry_wrapper


class ReferenceFailure(RuntimeError):
    """Reference solutions failed in the sandbox (a data or harness problem, never a model score)."""


@dataclass(frozen=True)
class TimeLimits:
    """Sandbox limits of one job: per test case and for the whole job (wall clock)."""

    per_test_s: float
    total_s: float


# The sandbox protocol's ceilings; the reference pass runs under them (it is trusted and must finish).
MAX_PER_TEST_S = 60.0
MAX_TOTAL_S = 600.0
REFERENCE_LIMITS = TimeLimits(per_test_s=MAX_PER_TEST_S, total_s=MAX_TOTAL_S)


@dataclass(frozen=True)
class Reference:
    """What a candidate is judged against: expected outputs (io kind) and its time limits."""

    expected: list[Any] | None
    limits: TimeLimits


def problem_key(problem: Problem) -> tuple[str, str]:
    return (problem.benchmark, problem.task_id)


def _job(problem: Problem, program: str, *, reference: bool, expected: list | None, limits: TimeLimits, cfg):
    from diffucoder.sandbox.client import Job

    common = {
        "time_limit_s": limits.per_test_s,
        "total_time_limit_s": limits.total_s,
        "memory_mb": cfg.memory_mb,
    }
    if problem.kind == "asserts":
        code = (program + "\n\n" + problem.setup) if problem.setup else program
        return Job(code=code, tests=list(problem.tests), **common)
    return Job(
        code=program + entry_wrapper(problem, reference),
        entry_point=ENTRY_NAME,
        inputs=[list(args) for args in problem.inputs],
        expected=expected,
        atol=problem.atol,
        **common,
    )


def scaled_time_limits(
    test_seconds: list[float | None], job_seconds: float, cfg: EvaluationConfig
) -> TimeLimits:
    """A candidate's limits from the reference's run (EvalPlus: each input gets max(floor, factor x
    the reference's time on it); the job's wall cap is the sum of those, at most ``max_time_limit_s``).

    The sandbox takes one per-test limit per job, so every test gets the largest per-input limit. The
    wall cap never drops below factor x the reference's whole job (+ the floor): a problem whose
    reference alone needs most of the cap (Mbpp/255 builds 1.6M tuples) stays solvable.
    """
    per_input = [max(cfg.min_time_limit_s, cfg.time_limit_factor * (t or 0.0)) for t in test_seconds]
    per_test = min(MAX_PER_TEST_S, max(per_input, default=cfg.min_time_limit_s))
    total = max(
        min(cfg.max_time_limit_s, sum(per_input)),
        cfg.time_limit_factor * job_seconds + cfg.min_time_limit_s,
        per_test,
    )
    return TimeLimits(per_test_s=per_test, total_s=min(MAX_TOTAL_S, total))


def run_references(
    problems: list[Problem], client, cfg: EvaluationConfig
) -> dict[tuple[str, str], Reference]:
    """Run every reference once; returns expected outputs and time limits keyed by :func:`problem_key`.

    Raises:
        ReferenceFailure: listing each problem whose reference did not pass / produce outputs.
    """
    jobs = [
        _job(p, p.reference, reference=True, expected=None, limits=REFERENCE_LIMITS, cfg=cfg)
        for p in problems
    ]
    results = client.run_batch(jobs)
    references, failures = {}, []
    for problem, result in zip(problems, results, strict=True):
        where = f"{problem.benchmark} {problem.task_id}"
        if result.infra_error:
            failures.append(f"{where}: sandbox infrastructure error: {result.infra_error}")
            continue
        if problem.kind == "io":
            outputs = result.outputs
            if outputs is None or len(outputs) != len(problem.inputs) or result.passed != result.total:
                failures.append(
                    f"{where}: reference did not return an output for every input {_summary(result)}"
                )
                continue
            expected = list(outputs)
        else:
            if result.passed != result.total:
                failures.append(f"{where}: reference fails its own tests {_summary(result)}")
                continue
            expected = None
        references[problem_key(problem)] = Reference(
            expected, scaled_time_limits(result.test_seconds, result.duration_s, cfg)
        )
    if failures:
        raise ReferenceFailure(f"{len(failures)} reference solution(s) failed:\n  " + "\n  ".join(failures))
    return references


def _summary(result) -> str:
    verdicts = sorted(set(result.verdicts))
    return f"(verdicts {verdicts}, {result.passed}/{result.total} passed, stderr: {result.stderr[-300:]!r})"


def candidate_jobs(items: list[tuple[Problem, str]], references: dict[tuple[str, str], Reference], cfg):
    """Sandbox jobs for (problem, program) pairs, judged against their references."""
    jobs = []
    for problem, program in items:
        ref = references[problem_key(problem)]
        jobs.append(
            _job(problem, program, reference=False, expected=ref.expected, limits=ref.limits, cfg=cfg)
        )
    return jobs


def verdict_of(result) -> tuple[bool, str]:
    """(passed, verdict): the first non-passing test verdict, "passed", or "infra_error"."""
    if result.infra_error:
        return False, "infra_error"
    if result.total > 0 and result.passed == result.total:
        return True, "passed"
    failing = [v for v in result.verdicts if v != "passed"]
    return False, failing[0] if failing else "failed"


def execute_candidates(items: list[tuple[Problem, str]], client, references, cfg: EvaluationConfig) -> list:
    """Run (problem, program) pairs in the sandbox; returns one JobResult per pair, in order."""
    return client.run_batch(candidate_jobs(items, references, cfg))
