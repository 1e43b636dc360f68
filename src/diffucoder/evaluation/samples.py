"""Completions produced elsewhere, in EvalPlus's samples format, and EvalPlus's results file.

A samples file is JSONL (optionally gzipped, local or ``s3://``): one object per line with
``task_id`` and either ``solution`` (the whole program) or ``completion`` (appended to the task's
prompt, as EvalPlus does); any number of lines per task. Every problem of the loaded dataset needs at
least one sample, and every sample must name a task of it: a file made for another dataset or
version is refused with the first offending line, never scored in part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from diffucoder.evaluation.benchmarks import Problem, jsonl_objects, mbpp_serialize_inputs


class SamplesError(ValueError):
    """A samples file that cannot be scored as it is (the message names the line and what to do)."""


@dataclass(frozen=True)
class Sample:
    line: int
    task_id: str
    solution: str | None
    completion: str | None

    def program(self, problem: Problem) -> str:
        return self.solution if self.solution is not None else problem.prompt + (self.completion or "")


def read_samples(uri: str) -> list[Sample]:
    from diffucoder import storage

    try:
        raw = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"samples file {uri} does not exist") from exc
    samples = []
    for line_no, row in jsonl_objects(uri, raw, SamplesError):
        if not isinstance(row.get("task_id"), str):
            raise SamplesError(f"{uri} line {line_no}: expected an object with a string 'task_id'")
        solution, completion = row.get("solution"), row.get("completion")
        if solution is None and completion is None:
            raise SamplesError(
                f"{uri} line {line_no}: {row['task_id']} has neither 'solution' nor 'completion'"
            )
        for name, value in (("solution", solution), ("completion", completion)):
            if value is not None and not isinstance(value, str):
                raise SamplesError(
                    f"{uri} line {line_no}: '{name}' must be a string (one sample per line; repeat the task_id)"
                )
        samples.append(Sample(line_no, row["task_id"], solution, completion))
    if not samples:
        raise SamplesError(f"{uri}: no samples")
    return samples


def samples_dataset(samples: list[Sample], uri: str) -> str:
    """ "humaneval" or "mbpp", from the task ids; a file mixing both is refused."""
    prefixes = {"HumanEval": "humaneval", "Mbpp": "mbpp"}
    for sample in samples:
        if sample.task_id.split("/")[0] not in prefixes:
            raise SamplesError(
                f"{uri} line {sample.line}: unknown task id {sample.task_id!r}: samples must be for "
                "HumanEval+ (HumanEval/N) or MBPP+ (Mbpp/N)"
            )
    kinds = {s.task_id.split("/")[0] for s in samples}
    if len(kinds) > 1:
        raise SamplesError(f"{uri}: mixes task ids of {sorted(kinds)}; score one dataset per samples file")
    return prefixes[kinds.pop()]


def match_samples(
    samples: list[Sample], problems: list[Problem], uri: str, *, known_task_ids: set[str]
) -> dict[str, list[Sample]]:
    """Samples per task id of ``problems``, checked against the loaded dataset.

    ``known_task_ids`` is every task of the data file (``problems`` may be capped by
    ``evaluation.max_problems``; samples of the other known tasks are left out, not refused)."""
    label = problems[0].benchmark if problems else "the benchmark"
    by_task: dict[str, list[Sample]] = {p.task_id: [] for p in problems}
    for sample in samples:
        if sample.task_id not in known_task_ids:
            raise SamplesError(
                f"{uri} line {sample.line}: unknown task id {sample.task_id!r}: not in the loaded "
                f"{label} data (sha256 {problems[0].source_sha256[:12] if problems else '?'}); "
                "were the samples made for a different dataset version?"
            )
        if sample.task_id in by_task:
            by_task[sample.task_id].append(sample)
    missing = [task for task, group in by_task.items() if not group]
    if missing:
        raise SamplesError(
            f"{uri}: no samples for {len(missing)} of the {len(by_task)} {label} tasks "
            f"(first: {', '.join(missing[:5])}); were the samples made for a different dataset version? "
            "Score a subset with evaluation.max_problems."
        )
    return by_task


def evalplus_results(
    rows: list[tuple[Problem, Sample, dict[str, Any]]], dataset_md5: str, *, base_only: bool
) -> dict[str, Any]:
    """EvalPlus 0.3.1's ``*_eval_results.json``: ``{"date", "hash", "eval": {task_id: [...]}}``.

    ``rows`` are (problem, sample, outcome per tier) in sample order; each entry carries the solution,
    ``base_status``/``plus_status`` and the failing input EvalPlus names (the first, as its default
    fast check stops there)."""
    results: dict[str, Any] = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "hash": dataset_md5,
        "eval": {},
    }
    for problem, sample, tiers in rows:
        entry = {"task_id": problem.task_id, "solution": sample.program(problem)}
        for tier in problem.tiers:
            if base_only and tier.name == "plus":
                continue
            outcome = tiers[tier.name]
            failing = [] if outcome.first_failure is None else [list(tier.inputs[outcome.first_failure])]
            if problem.dataset == "mbpp":
                failing = mbpp_serialize_inputs(problem.task_id, failing)
            entry[f"{tier.name}_status"] = outcome.status
            entry[f"{tier.name}_fail_tests"] = failing
        entry.setdefault("plus_status", None)
        entry.setdefault("plus_fail_tests", [])
        results["eval"].setdefault(problem.task_id, []).append(entry)
    return results
