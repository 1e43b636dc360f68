"""Must-hold: reference solutions score 100% and empty / wrong solutions 0% through the REAL sandbox
server (a local subprocess on loopback). The default set runs a real subset of each benchmark
(the first 20 problems plus every problem with a special oracle, HumanEval+ capped at 100 inputs per
problem to keep CI fast); the full sets, every input included, are slow-marked."""

from __future__ import annotations

import pytest

from diffucoder.evaluation.benchmarks import Problem, load_benchmark
from diffucoder.evaluation.config import EvaluationConfig
from diffucoder.evaluation.execution import combined_verdict, execute_candidates, time_limits
from diffucoder.evaluation.prompts import program_from_code
from diffucoder.evaluation.references import run_references
from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.evalplus import MBPP_OUTPUT_NOT_NONE_TASKS, MBPP_OUTPUT_SET_EQ_TASKS
from diffucoder.sandbox.local import local_sandbox

BENCHMARKS = ("humaneval", "humaneval_plus", "mbpp", "mbpp_plus")
SUBSET = 20
SUBSET_MAX_INPUTS = 100


@pytest.fixture(scope="module")
def client():
    with (
        local_sandbox(SandboxConfig(workers=2)) as url,
        SandboxClient(url, SandboxConfig(request_timeout_s=600)) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def subsets(client):
    """name -> (problems, references) for the default-set subsets, computed once per module."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cfg = EvaluationConfig(max_io_inputs=SUBSET_MAX_INPUTS)
            problems = load_benchmark(name, cfg)
            special = {*MBPP_OUTPUT_SET_EQ_TASKS, *MBPP_OUTPUT_NOT_NONE_TASKS, "find_zero", "surface_Area"}
            special |= {"digit_distance_nums"}
            problems = problems[:SUBSET] + [p for p in problems[SUBSET:] if p.entry_point in special]
            cache[name] = (problems, run_references(problems, client, cfg))
        return cache[name]

    return get


def _score(problems: list[Problem], programs: list[str], client, references=None) -> tuple[float, list[str]]:
    cfg = EvaluationConfig()
    references = references or run_references(problems, client, cfg)
    results = execute_candidates(list(zip(problems, programs, strict=True)), client, references, cfg)
    outcomes = [combined_verdict(r) for r in results]
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


def test_time_limits_follow_evalplus_0_3_1():
    """untrusted_check: input i gets max(1 s, 4 x reference time); the tier's process
    min(60, sum) + 1 s, joined with one more second."""
    cfg = EvaluationConfig()
    fast = time_limits((0.01, 0.02), cfg)
    assert fast.per_input_s == (1.0, 1.0) and fast.wall_s == 4.0
    slow = time_limits((0.5, 2.0), cfg)
    assert slow.per_input_s == (2.0, 8.0) and slow.wall_s == 12.0
    capped = time_limits((0.5,) * 100, cfg)
    assert capped.per_input_s[0] == 2.0 and capped.wall_s == 62.0
    assert time_limits((), cfg).wall_s == 2.0  # an empty tier (Mbpp/793 plus) still loads the program
