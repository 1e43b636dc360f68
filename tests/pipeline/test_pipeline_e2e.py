"""The whole DAG through kfp.local on the micro setting, against a real moto S3 server and a real
MLflow server (tests/conftest.py fixtures): every stage runs, every artifact is complete, the MLflow
run tree is right, and the registered model loads and generates.

This is the pipeline's most valuable test; it runs in the default suite (a few minutes on 2 cores).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from diffucoder_kfp import local
from micro import MICRO_PARAMS, MICRO_PRESET

from diffucoder import steps, storage
from diffucoder.config import load_config

STEPS = {
    "data",
    "tiny-tasks",
    "tokenizer",
    "midtrain-mix",
    "pack-pretrain",
    "pack-midtrain",
    "pretrain",
    "midtrain",
    "instruct",
    "eval-midtrain",
    "eval-instruct",
    "grpo",
    "eval-grpo",
    "register",
    "promote",
}
STAGE_RUNS = [
    "evaluate-grpo",
    "evaluate-instruct",
    "evaluate-midtrain",
    "grpo",
    "instruct",
    "midtrain",
    "pretrain",
]


@pytest.fixture(scope="module")
def run_tmpdir():
    """The pipeline's own TMPDIR, so that what the run leaves behind in it can be checked."""
    path = Path(tempfile.mkdtemp(prefix="diffucoder-tmpdir-", dir="/tmp"))
    path.chmod(0o711)  # sandbox slots would keep their job dirs under it without bubblewrap
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, moto_server, mlflow_server, run_tmpdir):
    """One pipeline run on s3:// with the MLflow server; yields (run root, pipeline record)."""
    import boto3

    mp = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(run_tmpdir),
    }.items():
        mp.setenv(key, value)
    for name in ("MLFLOW_RUN_ID", "DIFFUCODER_PARENT_RUN_ID", "MLFLOW_TRACKING_URI"):
        mp.delenv(name, raising=False)
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="pipeline-e2e")
    cfg = load_config(MICRO_PRESET)
    cfg.output_root = "s3://pipeline-e2e/runs"
    cfg.tracking.tracking_uri = mlflow_server
    cfg.tracking.experiment = "pipeline-e2e"
    arguments = local.local_arguments(
        cfg, MICRO_PRESET, [], **MICRO_PARAMS, tracking_uri=mlflow_server, experiment="pipeline-e2e"
    )
    try:
        root = local.run_local(arguments, str(tmp_path_factory.mktemp("kfp-local")))
        yield root, steps.read_pipeline_record(root)
    finally:
        mp.undo()


def test_every_stage_ran_and_recorded(micro_run):
    root, record = micro_run
    assert root.startswith("s3://pipeline-e2e/runs/diffucoder-")
    assert record["status"] == "FINISHED" and record["kfp_state"] == "SUCCEEDED"
    rows = steps.read_step_records(record["data_root"]) + steps.read_step_records(root)
    assert {r["step"] for r in rows} == STEPS
    by_step = {r["step"]: r for r in rows}
    for stage in ("pretrain", "midtrain", "instruct", "grpo"):
        assert by_step[stage]["metrics"]["steps"] > 0
    # the data row times the corpus build from the ingest task's start, not the report task alone
    data = by_step["data"]
    started = steps.ingest_started(record["data_root"])
    assert data["finished_at"] - data["seconds"] == pytest.approx(started, abs=0.02)
    for label in ("instruct", "grpo"):
        assert 0.0 <= by_step[f"eval-{label}"]["metrics"]["tiny_heldout_pass_at_1_1x"] <= 1.0
    table = local.summary(root)
    assert "learning signal: held-out tiny tasks pass@1" in table and "mlflow ui --backend-store-uri" in table
    assert "paired SE" in table and "precision: pretrain, midtrain, instruct" in table


def test_artifacts_are_complete_and_verified(micro_run, tmp_path):
    root, record = micro_run
    data = record["data_root"]
    for name in ("corpus", "tasks", "tokenizer", "midtrain-mix", "pretrain-packed", "midtrain-packed"):
        uri = storage.join(data, name)
        assert storage.is_complete(uri), uri
        assert storage.read_manifest(uri).files, uri
    for stage in ("pretrain", "midtrain", "instruct", "grpo"):
        final = storage.join(root, stage, "final")
        local_copy = storage.get_dir(final, tmp_path / stage)  # verifies every sha256 in the manifest
        assert (local_copy / "config.json").is_file()
        result = json.loads(storage.read_text(storage.join(root, stage, "result.json")))
        assert result["final_model_uri"] == final
    for label in ("instruct", "grpo"):
        assert storage.exists(storage.join(root, f"eval-{label}", "report.html"))
    meta = steps.artifact_metadata(storage.join(data, "tasks"), steps.config_from_yaml(record["config_yaml"]))
    assert meta["config"]["seed"] == 0 and len(meta["manifest_sha256"]) == 64 and meta["bytes"] > 0


def test_the_stages_leave_no_staging_dirs_in_the_tmpdir(micro_run, run_tmpdir):
    # each stage wrote its S3 output through a local staging dir, removed once all is in the bucket
    assert list(run_tmpdir.glob("diffucoder-train/*")) == []


def test_mlflow_parent_and_child_runs(micro_run, mlflow_server):
    from mlflow import MlflowClient

    _, record = micro_run
    client = MlflowClient(tracking_uri=mlflow_server)
    parent = client.get_run(record["parent_run_id"])
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["diffucoder.kind"] == "pipeline" and tags["diffucoder.preset"] == MICRO_PRESET
    assert tags["kfp.run_id"] == record["kfp_run_id"] and tags["kfp.pipeline"] == record["pipeline"]
    assert tags["diffucoder.data_hash"] == record["data_fingerprint"]  # check-data's content hash
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["mlflow.source.name"] == "diffucoder"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == STAGE_RUNS
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags["kfp.run_id"] == record["kfp_run_id"] for c in children)
    evals = {
        c.data.tags["diffucoder.scored_stage"]: c for c in children if c.info.run_name.startswith("evaluate-")
    }
    for label, run in evals.items():
        assert run.data.tags["diffucoder.model_uri"].endswith(f"/{label}/final")
    # the parent's headline: held-out pass@1 per evaluated stage, and what GRPO changed
    headline = parent.data.metrics
    for label, run in evals.items():
        assert (
            headline[f"eval/tiny_heldout/pass_at_1_{label}"]
            == run.data.metrics["eval/tiny_heldout/pass_at_1_1x"]
        )
    # every stage run says which data it read; training metrics are grouped per stage
    for run in children:
        contexts = {t.value for d in run.inputs.dataset_inputs for t in d.tags}
        assert contexts == {"evaluation" if run.info.run_name.startswith("evaluate-") else "training"}
        assert all("/" in name for name in run.data.metrics), run.info.run_name
    by_name = {c.info.run_name: c for c in children}
    assert "train/loss" in by_name["pretrain"].data.metrics and "grpo/loss" in by_name["grpo"].data.metrics
    kind = client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"
    change = headline["eval/tiny_heldout/grpo_change"]
    assert change == pytest.approx(
        headline["eval/tiny_heldout/pass_at_1_grpo"] - headline["eval/tiny_heldout/pass_at_1_instruct"]
    )


def test_registered_model_loads_and_generates(micro_run, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    from diffucoder.decoding import diffusion_generate
    from diffucoder.model import load_model

    root, record = micro_run
    cfg = steps.config_from_yaml(record["config_yaml"])
    version = MlflowClient(tracking_uri=mlflow_server).get_model_version_by_alias(
        cfg.tracking.registered_model_name, cfg.tracking.registered_model_alias
    )
    assert version.source == storage.join(root, "grpo", "final")
    client = MlflowClient(tracking_uri=mlflow_server)
    [output] = client.get_run(version.run_id).outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.source_run_id == record["parent_run_id"] == version.run_id
    assert "eval/tiny_heldout/pass_at_1" in {m.key for m in logged.metrics}
    model, tokenizer = load_model(version.source)
    prompt = tokenizer(
        "<|im_start|>user\nWrite add3.<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt"
    )["input_ids"]
    out = diffusion_generate(model, prompt, None, cfg.decoding, generator=torch.Generator().manual_seed(0))
    assert out.sequences.shape == (1, prompt.shape[1] + cfg.decoding.max_new_tokens)
    assert not (out.sequences[:, prompt.shape[1] :] == model.mask_token_id).any()
