"""The HTML report is one self-contained file with every section and escaped untrusted text."""

import re

from diffucoder.evaluation.metrics import ProblemResult, SampleResult, aggregate
from diffucoder.evaluation.report import render_report


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
    assert "<td>50.0</td>" in page and "<td>100.0</td>" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # speed bars, AR-ness curves, heatmaps
    assert 'src="http' not in page and "<link" not in page
    assert "HumanEval/0 (1x, T=0.2): failed (0/3 tests passed)" in page
