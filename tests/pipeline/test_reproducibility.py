"""Same resolved config + seed -> the same run: a micro run and its `pipeline rerun` agree.

Slow (two whole-DAG runs). Tolerance: stage losses within 1e-3 relative, held-out pass@1 within
0.05 absolute (docs/pipeline.md); on one machine with one thread count they are in fact equal.
"""

from __future__ import annotations

import pytest
from diffucoder_kfp import local, remote
from micro import MICRO_PARAMS, MICRO_PRESET

from diffucoder import steps
from diffucoder.config import load_config


def _metrics(root: str) -> dict[str, dict]:
    return {r["step"]: r["metrics"] for r in steps.read_step_records(root)}


@pytest.mark.slow
def test_rerun_reproduces_the_final_metrics(tmp_path, mlflow_sqlite, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = load_config(MICRO_PRESET, [f"output_root={tmp_path / 'runs'}"])
    args = local.local_arguments(cfg, MICRO_PRESET, [], **MICRO_PARAMS, tracking_uri=mlflow_sqlite)
    first = local.run_local(args, str(tmp_path / "kfp"))
    second = local.run_local(remote.rerun_arguments(first), str(tmp_path / "kfp"))
    assert first != second
    assert (
        steps.read_pipeline_record(second)["config_yaml"] == steps.read_pipeline_record(first)["config_yaml"]
    )
    a, b = _metrics(first), _metrics(second)
    for stage in ("pretrain", "midtrain", "instruct"):
        assert b[stage]["loss"] == pytest.approx(a[stage]["loss"], rel=1e-3), stage
    for label in ("eval-instruct", "eval-grpo"):
        key = "tiny_heldout_pass_at_1_1x"
        assert abs(b[label][key] - a[label][key]) <= 0.05, label
