"""Running references and candidates through the sandbox service with EvalPlus 0.3.1 semantics.

Plan:
1. Reference pass (:mod:`diffucoder.evaluation.references`): every problem's reference program runs
   once per tier, trusted and unhurried; its outputs become the expected values and its time on
   each input sets that input's limit. A reference that fails is a data problem and is reported,
   never silently scored.
2. Time limits, as ``untrusted_check`` of EvalPlus 0.3.1: input *i* gets
   ``max(min_time_limit_s, time_limit_factor x reference time on i)``; a tier's process gets
   ``min(max_time_limit_s, sum of its inputs' limits) + 2`` s of wall clock (EvalPlus's +1 and its
   ``join(timeout + 1)``), each tier on its own.
3. Candidate pass: one job per (problem, sample, tier), stopping at the first input that raises or
   times out, as EvalPlus's default ``fast_check``; the trusted side compares outputs
   (:mod:`diffucoder.sandbox.evalplus`). Identical jobs (the same samples scored for ``humaneval``
   and ``humaneval_plus``) run once. An infrastructure error is kept apart from a failing program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from diffucoder.evaluation.benchmarks import Problem
from diffucoder.evaluation.config import EvaluationConfig

if TYPE_CHECKING:
    from diffucoder.sandbox.client import Tier as ClientTier

# EvalPlus's process for a tier lives min(cap, sum of limits) + 1 s, joined with another second.
WALL_SLACK_S = 2.0
# The sandbox protocol's ceiling on one test's limit.
MAX_PER_TEST_S = 60.0

Status = Literal["pass", "fail", "timeout"]


class ReferenceFailure(RuntimeError):
    """Reference solutions failed in the sandbox (a data or harness problem, never a model score)."""


@dataclass(frozen=True)
class TimeLimits:
    """Sandbox limits of one tier's job: one per input, and the wall clock of the whole job."""

    per_input_s: tuple[float, ...]
    wall_s: float


@dataclass(frozen=True)
class TierReference:
    """What a candidate's tier is judged against: encoded expected outputs and the reference's times."""

    expected: list[Any] | None  # codec trees; None for asserts problems
    seconds: tuple[float, ...]


@dataclass(frozen=True)
class Reference:
    """A problem's references, tier by tier (asserts problems have one unnamed tier)."""

    tiers: dict[str, TierReference]


@dataclass
class TierOutcome:
    """One candidate tier as EvalPlus reports it, plus what the sandbox saw."""

    status: Status
    verdict: str  # first non-passing verdict, "passed", or "infra_error"
    n_passed: int
    n_tests: int
    first_failure: int | None  # index of the input EvalPlus names in ``*_fail_tests``
    infra_error: str | None = None
    error: str | None = None  # what the program said when it failed: its exception, else stderr's end


ERROR_CHARS = 1500  # of a failing program's error text kept per sample (the end, where the exception is)


def _error_text(result) -> str | None:
    text = (result.program_error or result.stderr or "").strip()
    return text[-ERROR_CHARS:] or None


TEST_CHARS = 500  # of a failing input's text kept per sample (plus inputs can be huge)


def failing_test(problem: Problem, tiers: dict[str, TierOutcome]) -> tuple[str | None, str | None]:
    """The first test a sample failed, as text (the assert, or the call on the failing input), and
    the program's error text there; (None, None) when it passed or failed before any test."""
    for name in tier_names(problem):
        outcome = tiers.get(name)
        if outcome is None or outcome.status == "pass":
            continue
        test = None
        if outcome.first_failure is not None:
            if problem.kind == "asserts":
                test = problem.tests[outcome.first_failure]
            else:
                args = next(t for t in problem.tiers if t.name == name).inputs[outcome.first_failure]
                test = f"{problem.entry_point}({', '.join(map(repr, args))})"
            test = test if len(test) <= TEST_CHARS else test[:TEST_CHARS] + " ..."
        return test, outcome.error or outcome.infra_error
    return None, None


def problem_key(problem: Problem) -> tuple[str, str]:
    return (problem.benchmark, problem.task_id)


def time_limits(seconds: tuple[float, ...], cfg: EvaluationConfig) -> TimeLimits:
    """EvalPlus 0.3.1's limits for a tier whose reference took ``seconds`` on its inputs."""
    per_input = tuple(
        min(MAX_PER_TEST_S, max(cfg.min_time_limit_s, cfg.time_limit_factor * t)) for t in seconds
    )
    return TimeLimits(per_input, min(cfg.max_time_limit_s, sum(per_input)) + WALL_SLACK_S)


def _tier_job(problem: Problem, tier: ClientTier, program: str, ref: TierReference, cfg: EvaluationConfig):
    """``tier``: the sandbox client's Tier of this problem's inputs and expected outputs, shared by
    every sample so the sandbox receives them once."""
    from diffucoder.sandbox.client import Job

    limits = time_limits(ref.seconds, cfg)
    return Job(
        code=program,
        entry_point=problem.entry_point,
        tier=tier,
        atol=problem.atol,
        evalplus_dataset=problem.dataset,
        time_limits_s=list(limits.per_input_s) if limits.per_input_s else None,
        time_limit_s=None if limits.per_input_s else 1.0,
        load_time_limit_s=limits.wall_s,
        total_time_limit_s=limits.wall_s,
        memory_mb=cfg.memory_mb,
        stop_on_failure=True,
    )


def _asserts_job(problem: Problem, program: str, ref: TierReference, cfg: EvaluationConfig):
    from diffucoder.sandbox.client import Job

    limits = time_limits(ref.seconds, cfg)
    code = (program + "\n\n" + problem.setup) if problem.setup else program
    return Job(
        code=code,
        tests=list(problem.tests),
        time_limits_s=list(limits.per_input_s),
        total_time_limit_s=limits.wall_s,
        memory_mb=cfg.memory_mb,
    )


def tier_names(problem: Problem) -> list[str]:
    return [t.name for t in problem.tiers] if problem.kind == "io" else ["tests"]


def candidate_job(
    problem: Problem, tier_name: str, program: str, reference: Reference, cfg, *, shared: dict | None = None
):
    """The sandbox job of one sample on one tier; ``shared`` (a dict kept across calls) gives the
    samples of a tier one client Tier object."""
    from diffucoder.sandbox.client import Tier as ClientTier

    ref = reference.tiers[tier_name]
    if problem.kind == "asserts":
        return _asserts_job(problem, program, ref, cfg)
    shared = {} if shared is None else shared
    key = (problem.source_sha256 or problem.benchmark, problem.task_id, tier_name)
    if key not in shared:
        tier = next(t for t in problem.tiers if t.name == tier_name)
        shared[key] = ClientTier([list(args) for args in tier.inputs], encoded_expected=ref.expected)
    return _tier_job(problem, shared[key], program, ref, cfg)


def evalplus_status(result) -> tuple[Status, int | None]:
    """EvalPlus's status of a tier's job and the index of its first failing input.

    "timeout" where EvalPlus's process would not have reported (the wall clock ran out, or the
    process died: ``os._exit``, a crash); "fail" for anything the harness saw (a wrong value, an
    exception, a per-input timeout, ``sys.exit`` at import)."""
    if result.total == 0:
        return ("pass" if result.program_status == "ok" else "fail"), None
    first = next((i for i, v in enumerate(result.verdicts) if v != "passed"), None)
    if first is None:
        return "pass", None
    if result.verdicts[first] == "crashed" or result.wall_timeout_at == first:
        return "timeout", first
    return "fail", first


def tier_outcome(result) -> TierOutcome:
    if result.infra_error:
        return TierOutcome("fail", "infra_error", 0, result.total, None, result.infra_error)
    status, first = evalplus_status(result)
    verdict = "passed" if status == "pass" else (result.verdicts[first] if first is not None else "failed")
    if first is None and status != "pass":
        verdict = result.program_status if result.program_status != "ok" else "failed"
    return TierOutcome(status, verdict, result.passed, result.total, first, error=_error_text(result))


def execute_candidates(
    items: list[tuple[Problem, str]], client, references: dict[tuple[str, str], Reference], cfg
) -> list[dict[str, TierOutcome]]:
    """Run (problem, program) pairs in the sandbox; returns each pair's outcome per tier, in order.

    Jobs are keyed by (data file, task, tier, program) and run once each."""
    keys, jobs, index, shared = [], [], {}, {}
    for problem, program in items:
        row = []
        for name in tier_names(problem):
            key = (problem.source_sha256 or problem.benchmark, problem.task_id, name, program)
            if key not in index:
                index[key] = len(jobs)
                reference = references[problem_key(problem)]
                jobs.append(candidate_job(problem, name, program, reference, cfg, shared=shared))
            row.append((name, index[key]))
        keys.append(row)
    results = client.run_batch(jobs)
    return [{name: tier_outcome(results[j]) for name, j in row} for row in keys]


def combined_verdict(outcomes: dict[str, TierOutcome]) -> tuple[bool, str]:
    """(passed, verdict) of a sample over its tiers: the first tier's failing verdict, "passed"."""
    for outcome in outcomes.values():
        if outcome.status != "pass":
            return False, outcome.verdict
    return True, "passed"
