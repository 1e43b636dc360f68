"""Sample-for-sample agreement with EvalPlus 0.3.1 itself (installed from PyPI into build/).

Runs benchmarks/evalplus_agreement.py on the committed hard sample set (every HumanEval+ and MBPP+
task): EvalPlus offline on the project's data files, and ``diffucoder evaluate --samples`` on the
same samples. Every sample's base and plus status must agree on pass / not pass, except where
EvalPlus 0.3.1 itself is wrong (HumanEval/32, Mbpp/255's plus tier), and those exceptions must
actually occur. ``make test-evalplus``; needs PyPI the first time (the venv is then reused).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from diffucoder import benchmark_data

REPO = Path(__file__).resolve().parents[2]


def _agreement_module():
    spec = importlib.util.spec_from_file_location(
        "evalplus_agreement", REPO / "benchmarks" / "evalplus_agreement.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["humaneval", "mbpp"])
def test_every_sample_agrees_with_evalplus_0_3_1(dataset):
    agreement = _agreement_module()
    work = REPO / "build" / "evalplus-agreement-test"
    report = agreement.run(
        Path(benchmark_data.shipped_root()), [dataset], work / dataset, parallel=2, tasks=None, timed=False
    )[dataset]
    assert report["counts"]["samples"] > 3 * report["tasks"], report["by_kind"]
    assert not report["unexplained"], report["unexplained"][:20]
    # the named EvalPlus bugs are real: they show up, and only where named
    bugs = {(r["task_id"], r["tier"]) for r in report["known_bugs"]}
    expected = {
        k
        for k in agreement.KNOWN_EVALPLUS_BUGS
        if k[0].startswith("HumanEval" if dataset == "humaneval" else "Mbpp")
    }
    assert bugs == expected
    assert all(
        r["evalplus"] != "pass" and r["ours"] == "pass"
        for r in report["known_bugs"]
        if r["kind"] == "canonical"
    )
