"""The HTML report is one self-contained file with every section and escaped untrusted text."""

import dataclasses
import re

import pytest
from test_metrics import _sample as passing_or_not

from diffucoder.evaluation.metrics import ProblemResult, SampleResult, aggregate
from diffucoder.evaluation.report import render_report, wilson_interval


def test_report_is_self_contained_and_escapes_programs():
    bad = SampleResult(
        completion="x",
        program="print('<script>alert(1)</script>')",
        passed=False,
        verdict="failed",
        n_passed=0,
        n_tests=3,
        trace=[3, 1, 2, 0],
        arness_local={1: 0.5, 2: 0.25},
        arness_global={1: 0.75},
    )
    good = SampleResult(completion="y", program="ok", passed=True, verdict="passed", n_passed=3, n_tests=3)
    results = [
        ProblemResult("humaneval_plus", "HumanEval/0", "1x", 0.2, [bad]),
        ProblemResult("humaneval_plus", "HumanEval/1", "1x", 0.2, [good]),
        ProblemResult("humaneval_plus", "HumanEval/0", "2x", 0.2, [good]),
    ]
    metrics = aggregate(results, ks=[1])
    page = render_report(
        metrics,
        results,
        title="eval <run>",
        benchmarks=["humaneval_plus"],
        speeds=["1x", "2x"],
        temperatures=[0.2],
        ks=[1],
        heatmap_problems=2,
        failure_limit=5,
        notes={"model": "s3://m"},
    )
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "eval &lt;run&gt;" in page
    # score table: 1 of 2 problems at 1x, 1 of 1 at 2x
    assert '<td class="best">50.0</td>' in page and '<td class="best">100.0</td>' in page
    # best columns: with n and the interval, n = 2 problems at 1x and 1 at 2x
    assert (
        "<td>50.0 <small>[9.5, 90.5]</small></td>" in page
        and "<td>100.0 <small>[20.7, 100.0]</small>" in page
    )
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # speed bars, AR-ness curves, heatmaps
    assert 'src="http' not in page and "<link" not in page
    assert "HumanEval/0 (1x, T=0.2): failed (0/3 tests passed)" in page


def _sample(passed: bool, trace: list[int] | None = None) -> SampleResult:
    return dataclasses.replace(passing_or_not(passed), trace=trace or [])


def _page(results: list[ProblemResult], speeds: list[str]) -> str:
    return render_report(
        aggregate(results, ks=[1]),
        results,
        title="t",
        benchmarks=["tiny_heldout"],
        speeds=speeds,
        temperatures=[0.2],
        ks=[1],
        heatmap_problems=2,
        failure_limit=5,
    )


def test_scores_carry_n_and_a_95_percent_interval():
    """3 of 5 problems pass: 60.0 with its Wilson interval [23.1, 88.2] and n = 5."""
    results = [ProblemResult("tiny_heldout", f"t{i}", "1x", 0.2, [_sample(i < 3)]) for i in range(5)]
    page = _page(results, ["1x"])
    assert "<th>problems (n)</th>" in page
    assert "<td class=l>tiny_heldout</td><td>5</td>" in page
    assert "<td>60.0 <small>[23.1, 88.2]</small></td>" in page


def test_wilson_interval_is_not_zero_width_at_the_ends():
    low, high = wilson_interval(0.0, 5)
    assert low == 0.0 and 0.4 < high < 0.45
    low, high = wilson_interval(1.0, 60)
    assert 0.93 < low < 0.95 and high == pytest.approx(1.0)


def test_one_speed_has_no_speed_section_and_no_empty_charts():
    """Only 1x ran and nothing was traced: no 1x-vs-2x chart, and a sentence where a chart would be empty."""
    results = [ProblemResult("tiny_heldout", "t0", "1x", 0.2, [_sample(False)])]
    page = _page(results, ["1x"])
    assert "1x vs 2x" not in page
    assert "No AR-ness was measured" in page and "No decode traces were recorded." in page
    assert 'src="data:image/png' not in page


def test_both_speeds_draw_the_speed_section():
    results = [
        ProblemResult("tiny_heldout", "t0", "1x", 0.2, [_sample(False, [1, 0])]),
        ProblemResult("tiny_heldout", "t0", "2x", 0.2, [_sample(True, [0, 1])]),
    ]
    page = _page(results, ["1x", "2x"])
    assert "<h2>1x vs 2x steps</h2>" in page


def test_both_speeds_show_the_relative_drop_with_its_paired_se():
    """4 problems pass at 1x, 2 of them fail at 2x: drop 50 +- 28.9 points, relative 50 % +- 28.9."""
    results = [ProblemResult("tiny_heldout", f"t{i}", "1x", 0.2, [_sample(True)]) for i in range(4)] + [
        ProblemResult("tiny_heldout", f"t{i}", "2x", 0.2, [_sample(i >= 2)]) for i in range(4)
    ]
    page = _page(results, ["1x", "2x"])
    row = (
        "<tr><td class=l>tiny_heldout</td><td>0.2</td><td>4</td><td>100.0</td><td>50.0</td>"
        "<td>+50.0 &plusmn; 28.9</td><td>+50.0 &plusmn; 28.9</td><td>2 / 0</td></tr>"
    )
    assert row in page
    assert "relative drop" not in _page(results[:4], ["1x"])


def _failing(program: str, test: str, error: str) -> SampleResult:
    return dataclasses.replace(
        passing_or_not(False), program=program, verdict="failed", failing_test=test, error=error
    )


def test_failures_come_from_every_benchmark_with_prompt_test_and_error():
    """Ten HumanEval failures come first in file order; with room for four, MBPP's still show."""
    results = [
        ProblemResult(
            "humaneval", f"HumanEval/{i}", "1x", 0.2, [_failing("x", "f(1)", "boom")], prompt="def f"
        )
        for i in range(10)
    ]
    mbpp_sample = _failing("def g(): return 0", "assert g() == 1", "AssertionError")
    results.append(ProblemResult("mbpp", "7", "1x", 0.2, [mbpp_sample], prompt="Write g <returns 1>"))
    page = render_report(
        aggregate(results, ks=[1]),
        results,
        title="t",
        benchmarks=["humaneval", "mbpp"],
        speeds=["1x"],
        temperatures=[0.2],
        ks=[1],
        heatmap_problems=0,
        failure_limit=4,
        notes={"MLflow run": "http://127.0.0.1:5000/#/experiments/1/runs/abc"},
        timings={"generation_s": 2.0, "sandbox_s": 1.0, "total_s": 4.0, "samples": 11.0},
    )
    failures = page[page.index("<h2>Failures</h2>") :]
    assert failures.count("<details>") == 4 and "mbpp 7 (1x, T=0.2): failed" in failures
    assert "by benchmark: humaneval: 10, mbpp: 1" in failures
    assert "Write g &lt;returns 1&gt;" in failures and "assert g() == 1" in failures
    assert "AssertionError" in failures
    assert '<a href="http://127.0.0.1:5000/#/experiments/1/runs/abc">' in page
    throughput = page[page.index("<h2>Throughput</h2>") : page.index("<h2>Failures</h2>")]
    assert "decoding</td><td>2.0 s" in throughput and "samples scored</td><td>2.75 /s" in throughput
