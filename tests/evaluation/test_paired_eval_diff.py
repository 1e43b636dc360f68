"""benchmarks/paired_eval_diff.py on small evaluation directories: the pass-rate change and, with
``--step-halving``, finding (d)'s comparison of the 1x -> 2x drop over several runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "paired_eval_diff.py"


def _eval_dir(root: Path, name: str, passed: dict[str, tuple[int, ...]]) -> str:
    """An evaluation directory whose task i passes its one sample at each speed as ``passed[speed][i]``."""
    rows = [
        {"benchmark": "tiny", "task_id": f"t{i}", "speed": speed, "temperature": 0.2, "n": 1, "n_correct": ok}
        for speed, results in passed.items()
        for i, ok in enumerate(results)
    ]
    directory = root / name
    directory.mkdir()
    (directory / "per_problem.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(directory)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_step_halving_compares_each_runs_drop_with_the_baseline_and_averages_the_runs(tmp_path):
    a = _eval_dir(tmp_path, "a", {"1x": (1, 1, 1), "2x": (0, 0, 1)})  # drops 1, 1, 0
    b1 = _eval_dir(tmp_path, "b1", {"1x": (1, 1, 1), "2x": (1, 1, 1)})  # drops 0, 0, 0
    b2 = _eval_dir(tmp_path, "b2", {"1x": (1, 1, 0), "2x": (1, 0, 0)})  # drops 0, 1, 0
    proc = _run(a, b1, b2, "--step-halving")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    evals = {r["eval"]: r for r in rows if "eval" in r}
    runs = {r["run"]: r for r in rows if "run" in r}
    (mean,) = [r for r in rows if "runs_mean" in r]

    assert evals[a]["drop"] == pytest.approx(2 / 3) and evals[a]["drop_se"] == pytest.approx(1 / 3)
    assert evals[a]["relative_drop"] == pytest.approx(2 / 3) and evals[b2]["relative_drop"] == pytest.approx(
        0.5
    )
    assert (evals[a]["worse_at_2x"], evals[a]["better_at_2x"]) == (2, 0)
    # per-task drop changes b1: -1, -1, 0; b2: -1, 0, 0 (each SE 1/3)
    assert runs[b1]["drop_change"]["diff"] == pytest.approx(-2 / 3)
    assert runs[b2]["drop_change"]["diff"] == pytest.approx(-1 / 3)
    assert runs[b2]["drop_change"]["se"] == pytest.approx(1 / 3)
    assert runs[b2]["relative_drop_change"] == pytest.approx(0.5 - 2 / 3)
    assert runs[b1]["pass_1x_change"]["diff"] == 0 and runs[b2]["pass_1x_change"]["diff"] == pytest.approx(
        -1 / 3
    )
    # mean of -2/3 and -1/3, SE across the two runs 1/6; A's drop SE 1/3 added in quadrature
    drop = mean["drop_change"]
    assert (
        mean["runs_mean"] == 2 and drop["mean"] == pytest.approx(-0.5) and drop["se"] == pytest.approx(1 / 6)
    )
    assert drop["se_with_baseline"] == pytest.approx(5**0.5 / 6)
    assert mean["pass_1x_change"]["mean"] == pytest.approx(-1 / 6)
    # relative changes -2/3 and -1/6: mean -5/12, SE 1/4; A's relative drop SE 1/3 in quadrature
    relative = mean["relative_drop_change"]
    assert relative["mean"] == pytest.approx(-5 / 12) and relative["se"] == pytest.approx(0.25)
    assert relative["se_with_baseline"] == pytest.approx(5 / 12)


def test_without_step_halving_it_pairs_pass_rates(tmp_path):
    a = _eval_dir(tmp_path, "a", {"1x": (0, 1, 1)})
    b = _eval_dir(tmp_path, "b", {"1x": (1, 1, 0)})
    proc = _run(a, b)
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert (row["problems"], row["diff"], row["up"], row["down"]) == (3, 0, 1, 1)


def test_step_halving_names_an_evaluation_without_both_speeds(tmp_path):
    a = _eval_dir(tmp_path, "a", {"1x": (1, 1), "2x": (1, 0)})
    b = _eval_dir(tmp_path, "b", {"1x": (1, 1)})
    proc = _run(a, b, "--step-halving")
    assert proc.returncode != 0 and f"{b} has no 1x and 2x rows for tiny at T 0.2" in proc.stderr
