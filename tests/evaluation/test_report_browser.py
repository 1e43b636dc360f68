"""The evaluation report in a real browser: Debian's headless Chromium loads the page, and the test
fails on any console error or script error, and on a chart with nothing drawn in it.

A probe script, added to a copy of the page, draws each chart onto a canvas and counts its coloured
pixels (axes and text are grey; bars, curves and heatmaps are coloured), then writes what it found
into the page, which Chromium's ``--dump-dom`` prints. A control image of empty axes is added too,
so the test shows that the probe does see an empty chart. Install Chromium with ``make browser``;
without it the test is skipped and says so.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess

import pytest
from matplotlib.figure import Figure
from test_report import _sample

from diffucoder.evaluation.metrics import ProblemResult, aggregate
from diffucoder.evaluation.report import render_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed here (`make browser` installs it)"
)

PROBE = """<script>
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push("script error: " + e.message));
for (const level of ["error", "warn"]) {
  const original = console[level];
  console[level] = (...args) => { window.__errors.push(level + ": " + args.join(" ")); original(...args); };
}
window.addEventListener("load", () => {
  const images = [];
  for (const img of document.images) {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = img.naturalWidth ? ctx.getImageData(0, 0, canvas.width, canvas.height).data : [];
    let coloured = 0;
    for (let i = 0; i < px.length; i += 4) {
      const hi = Math.max(px[i], px[i + 1], px[i + 2]), lo = Math.min(px[i], px[i + 1], px[i + 2]);
      if (hi - lo > 40) coloured++;
    }
    images.push({id: img.id, width: img.naturalWidth, coloured: coloured});
  }
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images: images, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def _empty_axes_png() -> str:
    fig = Figure(figsize=(3, 2))
    fig.add_subplot().set_title("nothing drawn")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _report() -> str:
    results = [
        ProblemResult("tiny_heldout", f"t{i}", speed, 0.2, [_sample(i % 2 == 0, [3, 1, 0, 2])], prompt="p")
        for i in range(4)
        for speed in ("1x", "2x")
    ]
    for r in results:
        for s in r.samples:
            s.arness_local, s.arness_global = {1: 0.5, 2: 0.25}, {1: 0.75}
    return render_report(
        aggregate(results, ks=[1], gen_seconds={"1x": 1.0, "2x": 0.5}),
        results,
        title="browser check",
        benchmarks=["tiny_heldout"],
        speeds=["1x", "2x"],
        temperatures=[0.2],
        ks=[1],
        heatmap_problems=2,
        failure_limit=3,
        notes={"MLflow run": "http://127.0.0.1:5000/#/experiments/1/runs/abc"},
        timings={"generation_s": 1.5, "total_s": 2.0, "samples": 8.0},
    )


def _render(page: str, tmp_path) -> tuple[dict, str]:
    """Load ``page`` (with the probe) in headless Chromium; returns the probe's findings and the
    browser's log."""
    control = f'<img id="control" src="data:image/png;base64,{_empty_axes_png()}">'
    path = tmp_path / "report.html"
    path.write_text(page.replace("<head>", "<head>" + PROBE, 1).replace("</body>", control + "</body>", 1))
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests may run as root, where Chromium's own sandbox refuses to start
            "--disable-gpu",
            "--enable-logging=stderr",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe did not report (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1))), done.stderr


def test_report_renders_without_errors_and_every_chart_has_content(tmp_path):
    findings, log = _render(_report(), tmp_path)
    assert findings["errors"] == []
    console = [line for line in log.splitlines() if "CONSOLE" in line and ":ERROR:" in line]
    assert console == []
    charts = [i for i in findings["images"] if i["id"] != "control"]
    assert len(charts) == 3  # 1x vs 2x bars, AR-ness curves, decode-order heatmap
    for chart in charts:
        assert chart["width"] > 100 and chart["coloured"] > 500, chart
    # the probe tells an empty chart apart: the control image has axes and a title, no data
    [control] = [i for i in findings["images"] if i["id"] == "control"]
    assert control["width"] > 100 and control["coloured"] == 0
