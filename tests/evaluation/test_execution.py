"""Must-hold: reference solutions score 100% and empty / wrong solutions 0% through the REAL sandbox
server (a local subprocess on loopback). The default set runs a real subset of each benchmark
(the first 20 problems plus every problem with a special oracle, HumanEval+ capped at 100 inputs per
problem to keep CI fast); the full sets, every input included, are slow-marked."""

from __future__ import annotations

import pytest

from diffucoder.evaluation.benchmarks import Problem, load_benchmark
from diffucoder.evaluation.config import EvaluationConfig
from diffucoder.evaluation.execution import (
    execute_candidates,
    run_references,
    scaled_time_limits,
    verdict_of,
)
from diffucoder.evaluation.oracles import MATCH_OR_NONE_ENTRY_POINTS, SET_EQUAL_ENTRY_POINTS
from diffucoder.evaluation.prompts import program_from_code
from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import local_sandbox

BENCHMARKS = ("humaneval", "humaneval_plus", "mbpp", "mbpp_plus")
SUBSET = 20
SUBSET_MAX_INPUTS = 100


@pytest.fixture(scope="module")
def client():
    with local_sandbox(SandboxConfig(workers=2)) as url:
        yield SandboxClient(url, SandboxConfig(request_timeout_s=600))


@pytest.fixture(scope="module")
def subsets(client):
    """name -> (problems, references) for the default-set subsets, computed once per module."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cfg = EvaluationConfig(max_io_inputs=SUBSET_MAX_INPUTS)
            problems = load_benchmark(name, cfg)
            special = SET_EQUAL_ENTRY_POINTS | MATCH_OR_NONE_ENTRY_POINTS | {"find_zero"}
            problems = problems[:SUBSET] + [p for p in problems[SUBSET:] if p.entry_point in special]
            cache[name] = (problems, run_references(problems, client, cfg))
        return cache[name]

    return get


def _score(problems: list[Problem], programs: list[str], client, references=None) -> tuple[float, list[str]]:
    cfg = EvaluationConfig()
    references = references or run_references(problems, client, cfg)
    results = execute_candidates(list(zip(problems, programs, strict=True)), client, references, cfg)
    outcomes = [verdict_of(r) for r in results]
    failed = [f"{p.task_id}: {v}" for p, (ok, v) in zip(problems, outcomes, strict=True) if not ok]
    return sum(ok for ok, _ in outcomes) / len(problems), failed


@pytest.mark.parametrize("name", BENCHMARKS)
def test_reference_solutions_score_100_on_subset(name, client, subsets):
    problems, references = subsets(name)
    score, failed = _score(problems, [p.reference for p in problems], client, references)
    assert score == 1.0, f"{name}: references failed: {failed}"


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_reference_solutions_score_100_on_full_set(name, client):
    problems = load_benchmark(name, EvaluationConfig())
    score, failed = _score(problems, [p.reference for p in problems], client)
    assert score == 1.0, f"{name}: references failed: {failed}"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_empty_and_wrong_solutions_score_0(name, client, subsets):
    problems, references = subsets(name)
    empty = [program_from_code(p, "", "instruct") for p in problems]
    wrong = [f"def {p.entry_point}(*args, **kwargs):\n    return '__wrong__'\n" for p in problems]
    for label, programs in (("empty", empty), ("wrong", wrong)):
        score, failed = _score(problems, programs, client, references)
        passed = sorted({p.task_id for p in problems} - {f.split(":")[0] for f in failed})
        assert score == 0.0, f"{name}: {label} solutions passed {passed}"


def test_time_limits_scale_with_the_reference_time():
    cfg = EvaluationConfig(time_limit_factor=4.0, min_time_limit_s=1.0, max_time_limit_s=30.0)
    fast = scaled_time_limits([0.01, 0.02], 0.05, cfg)
    assert (fast.per_test_s, fast.total_s) == (1.0, 2.0)
    slow = scaled_time_limits([0.5, 2.0], 2.6, cfg)
    assert slow.per_test_s == pytest.approx(8.0) and slow.total_s == pytest.approx(4 * 2.6 + 1.0)
    capped = scaled_time_limits([0.5] * 100, 1.0, cfg)
    assert capped.per_test_s == pytest.approx(2.0) and capped.total_s == 30.0
    # a reference that alone needs most of the cap keeps factor x its own time
    heavy = scaled_time_limits([0.01] * 10 + [20.0], 21.0, cfg)
    assert heavy.per_test_s == 60.0 and heavy.total_s == pytest.approx(4 * 21.0 + 1.0)
