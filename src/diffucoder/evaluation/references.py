"""Reference pass: expected outputs and reference timings, computed once per (data file, task).

Each problem's reference program runs once per tier in the sandbox under generous limits (it is
trusted); its outputs become the expected values and its time on each input that input's limit
(see execution.time_limits). Like EvalPlus's ground-truth cache, results are kept: one JSON file per
(data file SHA-256, task) under ``evaluation.reference_cache_uri`` (a local dir or ``s3://``
prefix; default ``<out>/reference_cache``). A file is used only when its own SHA-256, its key and
the tier's input count all match; anything else (a truncated upload, another data file, a
different ``max_io_inputs``) is recomputed and rewritten, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from diffucoder.evaluation.benchmarks import Problem
from diffucoder.evaluation.config import EvaluationConfig
from diffucoder.evaluation.execution import (
    MAX_PER_TEST_S,
    Reference,
    ReferenceFailure,
    TierReference,
    problem_key,
    tier_names,
)
from diffucoder.sandbox.evalplus import MBPP_OUTPUT_NOT_NONE_TASKS

log = logging.getLogger(__name__)

# Bump when what a cached reference means changes (harness timing, codec, input rebuilding).
CACHE_FORMAT = 2  # 2: large outputs digested from their pickle, not their repr
REFERENCE_WALL_S = 600.0  # the sandbox protocol's ceiling; a trusted reference must finish
REFERENCE_MEMORY_MB = 65536


def _tier_size(problem: Problem, tier: str) -> int:
    if problem.kind == "asserts":
        return len(problem.tests)
    return len(next(t for t in problem.tiers if t.name == tier).inputs)


def _tests_digest(problem: Problem) -> str:
    text = json.dumps([problem.reference, problem.setup, list(problem.tests)])
    return hashlib.sha256(text.encode()).hexdigest()


class ReferenceCache:
    """Per-task JSON files of expected outputs and timings, each verified by its own SHA-256."""

    def __init__(self, uri: str | None):
        self.uri = uri

    def _path(self, problem: Problem) -> str | None:
        from diffucoder import storage

        if not self.uri or not problem.source_sha256:
            return None
        name = problem.task_id.replace("/", "_") + ".json"
        return storage.join(self.uri, f"v{CACHE_FORMAT}", problem.source_sha256, name)

    def load(self, problem: Problem) -> dict[str, TierReference]:
        """The cached tiers of a problem that match it (others are missing from the answer)."""
        from diffucoder import storage

        path = self._path(problem)
        if path is None or not storage.exists(path):
            return {}
        try:
            entry = json.loads(storage.read_text(path))
            body, digest = entry["body"], entry["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("reference cache %s is unreadable (%s); recomputing it", path, exc)
            return {}
        if _digest(body) != digest or body.get("key") != self._key(problem):
            log.warning("reference cache %s does not verify; recomputing it", path)
            return {}
        tiers = {}
        for name, tier in body["tiers"].items():
            if name in tier_names(problem) and tier.get("n") == _tier_size(problem, name):
                tiers[name] = TierReference(tier["expected"], tuple(tier["seconds"]))
        return tiers

    def store(self, problem: Problem, tiers: dict[str, TierReference]) -> None:
        from diffucoder import storage

        path = self._path(problem)
        if path is None:
            return
        body = {
            "key": self._key(problem),
            "tiers": {
                name: {"n": _tier_size(problem, name), "expected": ref.expected, "seconds": list(ref.seconds)}
                for name, ref in tiers.items()
            },
        }
        storage.write_text(path, json.dumps({"sha256": _digest(body), "body": body}))

    @staticmethod
    def _key(problem: Problem) -> dict[str, Any]:
        key = {"format": CACHE_FORMAT, "data_sha256": problem.source_sha256, "task_id": problem.task_id}
        if problem.kind == "asserts":
            key["tests_sha256"] = _tests_digest(problem)
        return key


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _reference_job(problem: Problem, tier: str):
    from diffucoder.sandbox.client import Job

    common = {
        "time_limit_s": MAX_PER_TEST_S,
        "load_time_limit_s": REFERENCE_WALL_S,
        "total_time_limit_s": REFERENCE_WALL_S,
        "memory_mb": REFERENCE_MEMORY_MB,
    }
    if problem.kind == "asserts":
        code = (problem.reference + "\n\n" + problem.setup) if problem.setup else problem.reference
        return Job(code=code, tests=list(problem.tests), **common)
    inputs = next(t for t in problem.tiers if t.name == tier).inputs
    return Job(
        code=problem.reference, entry_point=problem.entry_point, inputs=[list(a) for a in inputs], **common
    )


def _tier_reference(problem: Problem, result) -> TierReference | str:
    """The reference of one tier from its job's result, or why there is none."""
    if result.infra_error:
        return f"sandbox infrastructure error: {result.infra_error}"
    summary = (
        f"(verdicts {sorted(set(result.verdicts))}, {result.passed}/{result.total} passed, "
        f"program {result.program_status}, stderr: {result.stderr[-300:]!r})"
    )
    if result.passed != result.total or result.program_status != "ok":
        what = (
            "fails its own tests" if problem.kind == "asserts" else "did not return an output for every input"
        )
        return f"reference {what} {summary}"
    seconds = tuple(float(s or 0.0) for s in result.test_seconds)
    if problem.kind == "asserts":
        return TierReference(None, seconds)
    expected = list(result.encoded_outputs or [])
    if problem.dataset == "mbpp" and problem.entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
        # EvalPlus's ground truth of these regex tasks is "the reference found a match" (a bool
        # is its own encoding)
        expected = [o is not None for o in result.outputs or []]
    return TierReference(expected, seconds)


def run_references(
    problems: list[Problem], client, cfg: EvaluationConfig, cache: ReferenceCache | None = None
) -> dict[tuple[str, str], Reference]:
    """Every problem's reference, from the cache where it verifies, else run once in the sandbox.

    Raises:
        ReferenceFailure: listing each problem whose reference did not pass / produce outputs.
    """
    cache = cache or ReferenceCache(None)
    # humaneval and humaneval_plus share their base tiers: one cache file and one run per task
    by_task: dict[tuple[str, str], list[Problem]] = {}
    for problem in problems:
        by_task.setdefault((problem.source_sha256 or problem.benchmark, problem.task_id), []).append(problem)
    representatives = [max(group, key=lambda p: len(tier_names(p))) for group in by_task.values()]
    with ThreadPoolExecutor(max_workers=16) as pool:
        cached = list(pool.map(cache.load, representatives))
    jobs, where = [], []
    for problem, tiers in zip(representatives, cached, strict=True):
        for name in tier_names(problem):
            if name not in tiers:
                jobs.append(_reference_job(problem, name))
                where.append((problem, name))
    log.info("reference pass: %d tier(s) cached, %d to run", sum(map(len, cached)), len(jobs))
    failures = []
    fresh: dict[int, dict[str, TierReference]] = {}
    for (problem, name), result in zip(where, client.run_batch(jobs) if jobs else [], strict=True):
        ref = _tier_reference(problem, result)
        if isinstance(ref, str):
            failures.append(f"{problem.benchmark} {problem.task_id} ({name}): {ref}")
            continue
        fresh.setdefault(id(problem), {})[name] = ref
    if failures:
        raise ReferenceFailure(f"{len(failures)} reference solution(s) failed:\n  " + "\n  ".join(failures))
    references = {}
    for problem, tiers in zip(representatives, cached, strict=True):
        if id(problem) in fresh:
            tiers = {**tiers, **fresh[id(problem)]}
            cache.store(problem, tiers)
        for member in by_task[(problem.source_sha256 or problem.benchmark, problem.task_id)]:
            references[problem_key(member)] = Reference({n: tiers[n] for n in tier_names(member)})
    return references
