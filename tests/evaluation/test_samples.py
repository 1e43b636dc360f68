"""Scoring EvalPlus samples files: named errors for bad input, the EvalPlus results file, and the
reference cache (local and s3:// through moto), through a real local sandbox server."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffucoder import benchmark_data
from diffucoder.config import load_config
from diffucoder.evaluation.benchmarks import load_benchmark
from diffucoder.evaluation.references import ReferenceCache, run_references
from diffucoder.evaluation.run import score_samples
from diffucoder.evaluation.samples import SamplesError, match_samples, read_samples, samples_dataset
from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.sandbox.local import local_sandbox

TASKS = 3


def _write(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _cfg(tmp_path, *extra):
    return load_config(
        "paper-7b",  # the paper's evaluation protocol: every input of every tier
        [
            f"evaluation.max_problems={TASKS}",
            "evaluation.max_io_inputs=20",
            f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            *extra,
        ],
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['{"task_id": "HumanEval/0", "solution": "x"}', "{oops"], r"line 2: invalid JSON"),
        ([{"task_id": "HumanEval/0"}], r"line 1: HumanEval/0 has neither 'solution' nor 'completion'"),
        ([{"task_id": "HumanEval/0", "solution": ["a", "b"]}], r"line 1: 'solution' must be a string"),
        ([{"solution": "x"}], r"line 1: expected an object with a string 'task_id'"),
        ([], r"no samples"),
    ],
)
def test_malformed_files_are_named_by_line(tmp_path, rows, message):
    with pytest.raises(SamplesError, match=message):
        read_samples(_write(tmp_path / "s.jsonl", rows))


def test_unknown_mixed_and_missing_tasks_are_refused(tmp_path):
    cfg = load_config("paper-7b", ["evaluation.max_problems=2"])
    problems = load_benchmark("humaneval_plus", cfg.evaluation)
    known = {p.task_id for p in load_benchmark("humaneval", load_config("paper-7b").evaluation)}
    uri = str(tmp_path / "s.jsonl")
    rows = [{"task_id": "HumanEval/0", "solution": "a"}, {"task_id": "Task/7", "solution": "b"}]
    with pytest.raises(SamplesError, match=r"line 2: unknown task id 'Task/7'"):
        samples_dataset(read_samples(_write(tmp_path / "s.jsonl", rows)), uri)
    rows = [{"task_id": "HumanEval/0", "solution": "a"}, {"task_id": "Mbpp/2", "solution": "b"}]
    with pytest.raises(SamplesError, match=r"mixes task ids of \['HumanEval', 'Mbpp'\]"):
        samples_dataset(read_samples(_write(tmp_path / "s.jsonl", rows)), uri)
    # an id the loaded version does not have: samples made for another version of the data
    rows = [{"task_id": "HumanEval/0", "solution": "a"}, {"task_id": "HumanEval/164", "completion": "b"}]
    with pytest.raises(
        SamplesError, match=r"line 2: unknown task id 'HumanEval/164'.*different dataset version"
    ):
        match_samples(read_samples(_write(tmp_path / "s.jsonl", rows)), problems, uri, known_task_ids=known)
    rows = [{"task_id": "HumanEval/0", "solution": "a"}]
    with pytest.raises(
        SamplesError, match=r"no samples for 1 of the 2 humaneval_plus tasks \(first: HumanEval/1\)"
    ):
        match_samples(read_samples(_write(tmp_path / "s.jsonl", rows)), problems, uri, known_task_ids=known)


def test_samples_score_as_evalplus_reports_and_reuse_the_reference_cache(tmp_path):
    data = Path(benchmark_data.shipped_root()) / benchmark_data.HUMANEVAL_PLUS
    raw = [json.loads(line) for line in gzip.decompress(data.read_bytes()).splitlines()][:TASKS]
    rows = []
    for row in raw:
        rows.append({"task_id": row["task_id"], "completion": row["canonical_solution"]})  # passes
        rows.append({"task_id": row["task_id"], "solution": row["prompt"] + "    return None\n"})  # fails
        rows.append({"task_id": row["task_id"], "solution": "import os\nos._exit(0)\n"})  # EvalPlus: timeout
    samples = _write(tmp_path / "samples.jsonl", rows)
    cfg = _cfg(tmp_path, f"evaluation.reference_cache_uri={tmp_path / 'refs'}")
    result = score_samples(cfg, samples, str(tmp_path / "out"))

    assert result.metrics["humaneval_pass_at_1_samples"] == pytest.approx(1 / 3)
    assert result.metrics["humaneval_plus_pass_at_1_samples"] == pytest.approx(1 / 3)
    report = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert set(report) == {"date", "hash", "eval"} and len(report["hash"]) == 32
    first = report["eval"][raw[0]["task_id"]]
    assert [(e["base_status"], e["plus_status"]) for e in first] == [
        ("pass", "pass"),
        ("fail", "fail"),
        ("timeout", "timeout"),
    ]
    assert first[0]["solution"] == raw[0]["prompt"] + raw[0]["canonical_solution"]
    assert first[1]["base_fail_tests"] == [raw[0]["base_input"][0]]
    assert len(list((tmp_path / "refs").rglob("*.json"))) == TASKS

    # a second run takes every reference from the cache; a corrupt entry is recomputed, not trusted
    victim = sorted((tmp_path / "refs").rglob("*.json"))[0]
    entry = json.loads(victim.read_text())
    entry["body"]["tiers"]["base"]["expected"][0] = {"i": 12345}
    victim.write_text(json.dumps(entry))
    again = score_samples(cfg, samples, str(tmp_path / "out2"))
    assert again.metrics == result.metrics
    assert json.loads(victim.read_text())["body"]["tiers"]["base"]["expected"][0] != {"i": 12345}


def test_the_samples_path_loads_no_torch_transformers_or_matplotlib(tmp_path, mlflow_sqlite):
    """`diffucoder evaluate --samples` has no model to load and no decoding to plot: its process
    scores a samples file end to end (report and MLflow run included) without importing any of them."""
    data = Path(benchmark_data.shipped_root()) / benchmark_data.HUMANEVAL_PLUS
    first = json.loads(gzip.decompress(data.read_bytes()).splitlines()[0])
    row = {"task_id": first["task_id"], "completion": first["canonical_solution"]}
    samples = _write(tmp_path / "s.jsonl", [row])
    out = tmp_path / "out"
    argv = ["evaluate", "--samples", samples, "--out", str(out), "--config", "paper-7b"]
    argv += ["evaluation.max_problems=1", "evaluation.max_io_inputs=5"]
    code = (
        "import json, sys\nfrom diffucoder.cli import main\n"
        f"rc = main({argv!r})\n"
        "print(json.dumps([rc, sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules)]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == [0, []]
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["humaneval_plus_pass_at_1_samples"] == 1.0
    assert (out / "report.html").is_file() and (out / "eval_results.json").is_file()


def test_reference_cache_on_s3(s3_env):
    cfg = load_config("paper-7b", ["evaluation.max_problems=2", "evaluation.max_io_inputs=5"])
    problems = load_benchmark("humaneval_plus", cfg.evaluation)
    cache = ReferenceCache(f"{s3_env}/reference-cache")
    with local_sandbox(SandboxConfig(workers=1)) as url, SandboxClient(url) as client:
        fresh = run_references(problems, client, cfg.evaluation, cache)
    for problem in problems:
        cached = cache.load(problem)
        assert set(cached) == {"base", "plus"}
        assert cached["plus"].expected == fresh[(problem.benchmark, problem.task_id)].tiers["plus"].expected
