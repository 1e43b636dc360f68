"""A recurring run, a promotion and a skipped-because-unchanged run, end to end on the smoke preset.

The schedule is created through the real ``kfp.Client`` against the validating loopback KFP API
(tests/pipeline/kfp_api.py); each "trigger" takes the recurring run's parameters with KFP's macros
expanded (``KfpApiServer.fire``) and runs the pipeline compiled from this checkout (the package
whose content hash names the scheduled version) through kfp.local, with a real MLflow server as
tracking store and registry and the run tree on a moto S3 server.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from diffucoder_kfp import local
from kfp_api import KfpApiServer, schedule, serve
from micro import MICRO_PARAMS, MICRO_PRESET

from diffucoder import steps
from diffucoder.config import load_config

pytestmark = pytest.mark.slow


def _run_trigger(api, rid, when, base_args, kfp_root) -> dict:
    package, params = api.fire(rid, when)
    root = local.run_local({**base_args, **params}, kfp_root)
    return {"root": root, "record": steps.read_pipeline_record(root), "package": package}


def test_schedule_promotion_and_skip(tmp_path, s3_env, mlflow_server, compiled_ir, monkeypatch, capsys):
    from mlflow import MlflowClient

    for name in ("MLFLOW_RUN_ID", "DIFFUCODER_PARENT_RUN_ID", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    overrides = ["promotion.min_problems=3", "tracking.registered_model_name=ops-e2e"]
    api = KfpApiServer()
    server, url = serve(api)
    try:
        nightly = [
            "--name",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--run-name-pattern",
            "nightly-[[ScheduledTime]]",
        ]
        package = ["--package", str(compiled_ir[0]), "--preset", MICRO_PRESET]
        assert (
            schedule("create", url, *nightly, "--param", "skip_if_data_unchanged=true", *package, *overrides)
            == 0
        )
        rid = next(iter(api.recurring))
        version = api.versions[api.recurring[rid]["pipeline_version_reference"]["pipeline_version_id"]]
        # the scheduled version is exactly this checkout's compiled pipeline
        assert (
            version["display_name"]
            == "diffucoder-" + hashlib.sha256(compiled_ir[0].read_bytes()).hexdigest()[:12]
        )

        cfg = load_config(MICRO_PRESET, overrides)
        cfg.output_root = f"{s3_env}/runs"  # a tracking server registers models from object storage only
        base = local.local_arguments(cfg, MICRO_PRESET, overrides, **MICRO_PARAMS, tracking_uri=mlflow_server)
        kfp_root = str(tmp_path / "kfp-local")
        client = MlflowClient(tracking_uri=mlflow_server)

        # trigger 1: trains, registers the candidate, which becomes the first champion
        first = _run_trigger(api, rid, dt.datetime(2026, 12, 1, 3, tzinfo=dt.UTC), base, kfp_root)
        assert first["root"].endswith("nightly-20261201030000")
        parent = client.get_run(first["record"]["parent_run_id"])
        assert parent.info.status == "FINISHED" and parent.data.tags["promotion/decision"] == "first"
        assert (
            parent.data.metrics["cost/gpu_seconds"] > 0
            and "cost/pass_at_1_per_gpu_hour" in parent.data.metrics
        )
        assert client.get_model_version_by_alias("ops-e2e", "champion").version == "1"

        # trigger 2: same data -> skipped, parent FINISHED with the reason, no new model version
        second = _run_trigger(api, rid, dt.datetime(2026, 12, 2, 3, tzinfo=dt.UTC), base, kfp_root)
        parent = client.get_run(second["record"]["parent_run_id"])
        assert parent.info.status == "FINISHED" and "data unchanged" in parent.data.tags[steps.SKIPPED_TAG]
        assert len(client.search_model_versions("name='ops-e2e'")) == 1
        assert not client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )

        # trigger 3: new data (another seed) -> trains, and promotion compares on the same problems
        api.recurring[rid]["runtime_config"]["parameters"]["seed"] = 1
        third = _run_trigger(api, rid, dt.datetime(2026, 12, 3, 3, tzinfo=dt.UTC), base, kfp_root)
        parent = client.get_run(third["record"]["parent_run_id"])
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["promotion/decision"] in ("promoted", "kept", "refused")
        assert len(client.search_model_versions("name='ops-e2e'")) == 2
        if parent.data.tags["promotion/decision"] != "refused":
            assert "promotion/se" in parent.data.tags and "promotion/champion_pass_at_1" in parent.data.tags
    finally:
        server.shutdown()
