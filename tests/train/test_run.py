"""End to end on one process: pretrain from packed shards, then instruct from its final model.

Real components throughout: the data stage's packer, the model package, DeepSpeed (world of one,
gloo), storage, and MLflow tracking into a SQLite store.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from train_helpers import run_train, small_overrides, train_cmd, train_env

from diffucoder.config import load_config
from diffucoder.train.precision import CpuFeatures, choose_precision
from diffucoder.train.run import load_start_model

METRICS = (
    "loss",
    "elbo_per_masked_token",
    "lr",
    "grad_norm",
    "tokens_per_sec",
    "mask_ratio",
    "step_time",
    "peak_memory_mb",
)


def _mlflow_run(tracking_uri: str, run_id: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    return client, client.get_run(run_id)


def test_pretrain_then_instruct_single_process(tmp_path, packed_dir, sft_file, mlflow_sqlite):
    env = train_env(mlflow_sqlite)
    out = tmp_path / "pretrain"
    run_train(train_cmd("pretrain", packed_dir, str(out), small_overrides("pretrain")), env)

    # output layout (docs/interfaces.md)
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 8 and result["world_size"] == 1
    # the tiny preset runs one rank without ZeRO, where DeepSpeed reports no norm: the loop takes it
    assert math.isfinite(result["metrics"]["grad_norm"]) and result["metrics"]["grad_norm"] > 0
    assert (out / "final" / "MANIFEST.json").is_file() and (out / "config.yaml").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000004", "step-000008"]
    ckpt = out / "checkpoints" / "step-000008"
    for part in (
        "MANIFEST.json",
        "model/model.safetensors",
        "deepspeed/state",
        "rng/rank-00000.pt",
        "config.yaml",
    ):
        assert (ckpt / part).exists(), part
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 8 and state["data"]["consumed"] == 8 * 4

    # tracking: one run with the stage's metrics (grouped under train/ in MLflow; result.json keeps
    # the flat names), the loss plot and the final URI
    client, run = _mlflow_run(mlflow_sqlite, result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["final_model_uri"] == str(out / "final")
    for name in METRICS:
        assert f"train/{name}" in run.data.metrics, name
        assert name in result["metrics"], name
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [2, 4, 6, 8]
    assert "plots/loss.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    # the preset's precision: auto, resolved for this CPU and recorded with its reason
    expected = choose_precision("auto", "cpu", cpu=CpuFeatures.detect())
    assert (result["precision"], result["precision_reason"]) == (expected.precision, expected.reason)
    assert run.data.params["precision"] == expected.precision
    assert run.data.params["precision_reason"] == expected.reason

    # stage 3 starts from stage 1's final model
    sft_out = tmp_path / "instruct"
    overrides = small_overrides("instruct", **{"instruct.max_steps": 4, "instruct.micro_batch_size": 2})
    run_train(train_cmd("instruct", sft_file, str(sft_out), overrides, init=str(out / "final")), env)
    sft_result = json.loads((sft_out / "result.json").read_text())
    assert sft_result["steps"] == 4 and Path(sft_result["final_model_uri"]).is_dir()
    _, sft_run = _mlflow_run(mlflow_sqlite, sft_result["run_id"])
    assert sft_run.data.params["init"] == str(out / "final")


def test_missing_init_model_is_named(tmp_path, sft_file):
    cfg = load_config("tiny")
    with pytest.raises(FileNotFoundError, match=f"--init {tmp_path}/nope: no such model directory"):
        load_start_model(cfg, "instruct", sft_file, str(tmp_path / "nope"))


def test_no_model_source_is_explained(sft_file):
    with pytest.raises(ValueError, match="pass --init MODEL_URI"):
        load_start_model(load_config("tiny"), "instruct", sft_file, None)


def test_missing_base_checkpoint_is_named(tmp_path, packed_dir):
    cfg = load_config("tiny", [f"model.base_model_uri={tmp_path}/no-base"])
    with pytest.raises(FileNotFoundError, match="no-base"):
        load_start_model(cfg, "pretrain", packed_dir, None)


def test_bf16_mixed_runs_the_forward_under_autocast(tmp_path, packed_dir, mlflow_sqlite):
    """Same seed and data: bf16-mixed trains to a loss close to fp32's but not bit-equal to it (the
    autocast is really on), and the saved weights stay float32."""
    env = train_env(mlflow_sqlite)
    losses = {}
    for precision in ("fp32", "bf16-mixed"):
        out = tmp_path / precision
        overrides = small_overrides(
            "pretrain",
            **{
                "pretrain.precision": precision,
                "pretrain.max_steps": 4,
                "model.attn_implementation": "sdpa_fp32",
            },
        )
        run_train(train_cmd("pretrain", packed_dir, str(out), overrides), env)
        losses[precision] = json.loads((out / "result.json").read_text())["metrics"]["loss"]
    assert losses["fp32"] != losses["bf16-mixed"]
    assert losses["bf16-mixed"] == pytest.approx(losses["fp32"], rel=0.05)
    config = json.loads((tmp_path / "bf16-mixed" / "final" / "config.json").read_text())
    assert config["dtype"] == "float32"
