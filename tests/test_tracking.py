"""diffucoder.tracking against an embedded SQLite store and a real ``mlflow server`` on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from diffucoder import tracking  # noqa: E402
from diffucoder.config import RunConfig, load_config  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "server"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, isolated_env) -> str:
    """Tracking URI of the backend under test, exported as MLFLOW_TRACKING_URI; no ranks, no parent."""
    isolated_env("RANK", "LOCAL_RANK", "MLFLOW_RUN_ID", tracking.PARENT_ENV, tracking.KFP_RUN_ID_ENV)
    if request.param == "sqlite":
        return request.getfixturevalue("mlflow_sqlite")
    url = request.getfixturevalue("mlflow_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    return url


@pytest.fixture
def cfg(backend: str) -> RunConfig:
    # The server is shared by the whole session: one experiment per test keeps tests apart.
    return load_config("tiny", [f"tracking.experiment=test-{uuid.uuid4().hex[:8]}", "seed=7"])


def experiment_runs(client: MlflowClient, cfg: RunConfig) -> list:
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_pipeline_parent_with_nested_stage_runs(cfg: RunConfig, backend: str) -> None:
    parent = tracking.start_pipeline_run(cfg, tags={"trigger": "test"}, data_hash="d41d8cd9")
    assert parent is not None
    assert os.environ[tracking.PARENT_ENV] == parent
    children = {}
    for stage in ("pretrain", "instruct"):
        with tracking.stage_run(stage, cfg) as tr:  # parent taken from $DIFFUCODER_PARENT_RUN_ID
            tr.log_metrics({"loss": 2.0}, step=1)
            tr.log_metrics({"loss": 1.5}, step=2)
            children[stage] = tr.run_id
    tracking.end_pipeline_run(parent)

    client = MlflowClient(backend)
    parent_run = client.get_run(parent)
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.tags["diffucoder.kind"] == "pipeline"
    assert parent_run.data.tags["diffucoder.data_hash"] == "d41d8cd9"
    assert parent_run.data.tags["trigger"] == "test"
    for stage, run_id in children.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.info.run_name == stage
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["diffucoder.stage"] == stage
        assert run.data.tags["diffucoder.preset"] == "tiny"
        assert [m.value for m in client.get_metric_history(run_id, "loss")] == [2.0, 1.5]
    found = client.search_runs(
        [parent_run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert {r.info.run_id for r in found} == set(children.values())


def test_config_is_logged_as_flat_params_and_yaml(cfg: RunConfig, backend: str, tmp_path: Path) -> None:
    with tracking.stage_run("pretrain", cfg) as tr:
        run_id = tr.run_id
    client = MlflowClient(backend)
    params = client.get_run(run_id).data.params
    assert params["seed"] == "7"
    assert params["storage.max_concurrency"] == str(cfg.storage.max_concurrency)
    assert params["tracking.experiment"] == cfg.tracking.experiment
    assert not any(isinstance(v, dict) for v in params.values())
    local = client.download_artifacts(run_id, "config.yaml", str(tmp_path))
    assert load_config(local) == cfg  # the artifact alone reproduces the run's config


def test_failed_stage_is_marked_and_restart_reattaches(cfg: RunConfig, backend: str) -> None:
    parent = tracking.start_pipeline_run(cfg)
    with pytest.raises(RuntimeError, match="node lost"), tracking.stage_run("pretrain", cfg, parent) as tr:
        first_id = tr.run_id
        tr.log_metrics({"loss": 3.0}, step=10)
        raise RuntimeError("node lost")
    client = MlflowClient(backend)
    assert client.get_run(first_id).info.status == "FAILED"

    # The restarted pod knows only the parent; it finds its unfinished run and continues the curve.
    with tracking.stage_run("pretrain", cfg, parent_run_id=parent) as tr:
        assert tr.run_id == first_id
        tr.log_metrics({"loss": 2.5}, step=20)
    run = client.get_run(first_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["diffucoder.resumed"] == "true"
    assert [(m.step, m.value) for m in client.get_metric_history(first_id, "loss")] == [(10, 3.0), (20, 2.5)]
    # Once finished, a new attempt of the stage gets a fresh run.
    with tracking.stage_run("pretrain", cfg, parent_run_id=parent) as tr:
        assert tr.run_id != first_id


def test_resume_by_explicit_run_id_and_env(
    cfg: RunConfig, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tracking.stage_run("grpo", cfg) as tr:
        run_id = tr.run_id
        tr.log_metrics({"reward/code/mean": 0.1}, step=1)
        tr.log_params({"total_steps": 100})
    with tracking.stage_run("grpo", cfg, resume_run_id=run_id) as tr:
        assert tr.run_id == run_id
        tr.log_metrics({"reward/code/mean": 0.2}, step=2)
        tr.log_params({"total_steps": 200})  # a resumed stage trains longer: no MLflow error
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)  # what KFP's MLflow integration injects
    changed = cfg.model_copy(update={"seed": 8})
    with tracking.stage_run("grpo", changed) as tr:
        assert tr.run_id == run_id
        tr.log_metrics({"reward/code/mean": 0.3}, step=3)
    run = MlflowClient(backend).get_run(run_id)
    assert run.data.params["seed"] == "7"  # params are immutable; the change is recorded instead
    assert run.data.params["total_steps"] == "100"
    assert run.data.tags["diffucoder.resume_changed_params"] == "seed,total_steps"
    history = MlflowClient(backend).get_metric_history(run_id, "reward/code/mean")
    assert [m.value for m in history] == [0.1, 0.2, 0.3]


def test_resume_of_unknown_run_names_it(cfg: RunConfig, backend: str) -> None:
    with (
        pytest.raises(ValueError, match=r"cannot resume MLflow run 'f{32}'"),
        tracking.stage_run("pretrain", cfg, resume_run_id="f" * 32),
    ):
        pass


@pytest.mark.parametrize("rank_var", ["RANK", "LOCAL_RANK"])
def test_non_zero_rank_logs_nothing(
    cfg: RunConfig, backend: str, monkeypatch: pytest.MonkeyPatch, rank_var: str, tmp_path: Path
) -> None:
    monkeypatch.setenv(rank_var, "1")
    assert tracking.start_pipeline_run(cfg) is None
    (tmp_path / "f.txt").write_text("x")
    with tracking.stage_run("pretrain", cfg) as tr:
        assert isinstance(tr, tracking.NullTracker) and tr.run_id is None
        tr.log_metrics({"loss": 1.0}, step=1)
        tr.log_params({"a": 1})
        tr.set_tags({"t": "v"})
        tr.log_text("hello", "x.txt")
        tr.log_artifact(tmp_path / "f.txt")
    tracking.end_pipeline_run(None)
    assert experiment_runs(MlflowClient(backend), cfg) == []


def test_metric_names_are_sanitised_and_accepted(cfg: RunConfig, backend: str) -> None:
    assert tracking.metric_name("pass@1") == "pass_at_1"
    assert tracking.metric_name("humaneval+/pass@1 (0.5x)") == "humaneval_/pass_at_1 _0.5x_"
    assert tracking.metric_name("reward/code/mean") == "reward/code/mean"
    weird = {"pass@1": 0.25, "humaneval+/pass@10": 0.5, "ar-ness[local]": 0.9, "skip": None}
    with tracking.stage_run("evaluate", cfg) as tr:
        tr.log_metrics(weird, step=0)
        run_id = tr.run_id
    metrics = MlflowClient(backend).get_run(run_id).data.metrics
    assert metrics == {"pass_at_1": 0.25, "humaneval_/pass_at_10": 0.5, "ar-ness_local_": 0.9}


def test_params_over_mlflow_limits_are_batched_and_clipped(cfg: RunConfig, backend: str) -> None:
    many = {"sweep": {f"p{i:03d}": i for i in range(250)}, "prompt": "x" * 10_000}
    with tracking.stage_run("pretrain", cfg) as tr:
        tr.log_params(many)
        run_id = tr.run_id
    params = MlflowClient(backend).get_run(run_id).data.params
    assert all(params[f"sweep.p{i:03d}"] == str(i) for i in range(250))
    assert params["prompt"].endswith("...[truncated]")
    assert len(params["prompt"]) <= 6000


def test_figure_text_and_artifacts(cfg: RunConfig, backend: str, tmp_path: Path) -> None:
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "a.jsonl").write_text('{"x": 1}\n')
    (tmp_path / "stats.json").write_text("{}")
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with tracking.stage_run("grpo", cfg) as tr:
        tr.log_figure(fig, "plots/reward.png")
        tr.log_text("def f(): pass\n", "samples/completions.txt")
        tr.log_artifact(tmp_path / "stats.json")
        tr.log_artifact(tmp_path / "samples", "rollouts")
        with pytest.raises(FileNotFoundError, match="missing.bin"):
            tr.log_artifact(tmp_path / "missing.bin")
        run_id = tr.run_id
    plt.close(fig)
    client = MlflowClient(backend)
    listed = {a.path for a in client.list_artifacts(run_id)}
    assert {"plots", "samples", "stats.json", "rollouts", "config.yaml"} <= listed
    assert [a.path for a in client.list_artifacts(run_id, "rollouts")] == ["rollouts/a.jsonl"]
    png = Path(client.download_artifacts(run_id, "plots/reward.png", str(tmp_path / "dl")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_register_model_sets_alias_to_newest_version(cfg: RunConfig, backend: str) -> None:
    name = f"diffucoder-{uuid.uuid4().hex[:6]}"  # the registry is shared across tests on the server
    with tracking.stage_run("register", cfg) as tr:
        run_id = tr.run_id
    v1 = tracking.register_model("s3://models/run-a/final", name, alias="candidate", run_id=run_id)
    v2 = tracking.register_model(
        "s3://models/run-b/final", name, alias="candidate", tags={"pass_at_1": "0.41"}, run_id=run_id
    )
    assert (v1, v2) == ("1", "2")
    version = MlflowClient(backend).get_model_version_by_alias(name, "candidate")
    assert str(version.version) == "2"
    assert version.source == "s3://models/run-b/final"
    assert version.tags == {"pass_at_1": "0.41"}


def test_registered_version_has_a_logged_model_with_signature_and_scores(
    cfg: RunConfig, backend: str, tmp_path: Path
) -> None:
    """The registry's version links the model logged to the pipeline run: its source run, an MLmodel
    with a signature and the model's scores as metrics of that run (not string tags)."""
    parent = tracking.start_pipeline_run(cfg)
    name = f"logged-{uuid.uuid4().hex[:6]}"
    scores = {"eval/tiny_heldout/pass_at_1": 0.375, "eval/humaneval/pass_at_1": 0.125}
    version = tracking.register_model(
        "s3://models/run-c/final", name, alias="candidate", run_id=parent, metrics=scores
    )
    client = MlflowClient(backend)
    mv = client.get_model_version(name, version)
    assert mv.source == "s3://models/run-c/final" and mv.run_id == parent
    assert not any("pass_at" in key for key in mv.tags)
    [output] = client.get_run(parent).outputs.model_outputs  # the version's run lists its model
    logged = client.get_logged_model(output.model_id)
    assert logged.source_run_id == parent and logged.status == "READY"
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [{"name": name, "version": version}]
    assert {m.key: m.value for m in logged.metrics} == scores
    assert {k: client.get_run(parent).data.metrics[k] for k in scores} == scores
    import mlflow.artifacts
    import yaml

    local = mlflow.artifacts.download_artifacts(f"{logged.artifact_location}/MLmodel", dst_path=str(tmp_path))
    description = yaml.safe_load(Path(local).read_text())
    assert description["metadata"]["source"] == "s3://models/run-c/final"
    assert [i["name"] for i in json.loads(description["signature"]["inputs"])] == ["input_ids"]


def test_metric_groups_curves_and_dataset_inputs(cfg: RunConfig, backend: str, tmp_path: Path) -> None:
    """Ungrouped names get the run's group; a curve over k is one metric with step = k; the data a
    stage read is a dataset input with its context and, for a sealed directory, its content hash."""
    from diffucoder import storage

    data = tmp_path / "packed"
    data.mkdir()
    (data / "shard-0.bin").write_bytes(b"\x00" * 64)
    manifest = storage.seal_dir(data)
    with tracking.stage_run("pretrain", cfg, metric_group="train") as tr:
        tr.log_metrics({"loss": 2.0, "cost/amount": 0.5, "reward/total/mean": 0.25}, step=1)
        tr.log_curve("arness/local_1x", {3: 0.5, 1: 0.9, 2: 0.7})
        tr.log_dataset(str(data), name="pretrain-data", context="training")
        run_id = tr.run_id
    client = MlflowClient(backend)
    run = client.get_run(run_id)
    assert set(run.data.metrics) == {"train/loss", "cost/amount", "reward/total/mean", "arness/local_1x"}
    curve = client.get_metric_history(run_id, "arness/local_1x")
    assert sorted((p.step, p.value) for p in curve) == [(1, 0.9), (2, 0.7), (3, 0.5)]
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "pretrain-data"
    assert dataset_input.dataset.digest == manifest.content_sha256()[:16]
    assert str(data) in dataset_input.dataset.source
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "training"}
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_register_local_path_works_locally_and_is_explained_on_a_server(
    cfg: RunConfig, backend: str, tmp_path: Path
) -> None:
    model_dir = tmp_path / "final"
    model_dir.mkdir()
    name = f"local-{uuid.uuid4().hex[:6]}"
    if backend.startswith("sqlite"):
        assert tracking.register_model(str(model_dir), name, alias="candidate") == "1"
        assert MlflowClient(backend).get_model_version_by_alias(name, "candidate").source == str(model_dir)
    else:
        with pytest.raises(ValueError, match=r"does not accept the local model path .*final.*s3://"):
            tracking.register_model(str(model_dir), name, alias="candidate")


def test_compare_runs_reports_param_diffs_and_metrics(cfg: RunConfig, backend: str) -> None:
    other = cfg.model_copy(update={"seed": 99})
    ids = []
    for c, loss in ((cfg, 1.0), (other, 0.5)):
        with tracking.stage_run("pretrain", c) as tr:
            tr.log_metrics({"loss": loss + 1}, step=1)
            tr.log_metrics({"loss": loss}, step=2)
            ids.append(tr.run_id)
    with tracking.stage_run("evaluate", cfg) as tr:
        tr.log_metrics({"pass@1": 0.3})
        ids.append(tr.run_id)
    cmp = tracking.compare_runs(ids)
    assert cmp.param_diffs == {"seed": ["7", "99", "7"]}
    assert cmp.same_params > 10
    assert cmp.metrics == {"loss": [1.0, 0.5, None], "pass_at_1": [None, None, 0.3]}
    assert cmp.run_names == ["pretrain", "pretrain", "evaluate"]
    assert cmp.as_dict()["statuses"] == ["FINISHED"] * 3


def test_tags_carry_mlflow_source_and_kfp_run_id(
    cfg: RunConfig, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tracking.KFP_RUN_ID_ENV, "run-abc123")
    parent = tracking.start_pipeline_run(cfg)
    tags = MlflowClient(backend).get_run(parent).data.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    # MLflow's own source tags (its UI shows them), not a project-specific one
    assert tags["mlflow.source.git.commit"] == head.stdout.strip()
    assert tags["mlflow.source.name"] == "diffucoder" and tags["mlflow.source.type"] == "JOB"
    assert "git_sha" not in tags
    assert tags["kfp.run_id"] == "run-abc123"
    assert tags["diffucoder.config_fingerprint"] == cfg.fingerprint()


def test_parent_run_carries_headline_pass_at_1_and_grpo_change(cfg: RunConfig, backend: str) -> None:
    """Each evaluation's pass@1 lands on the parent; the GRPO change appears once both stages are in,
    whichever of the two evaluations finishes first."""
    parent = tracking.start_pipeline_run(cfg)
    scores = {"grpo": 0.5, "instruct": 0.375}
    for label in ("grpo", "instruct"):  # GRPO's evaluation may finish before instruct's
        metrics = {
            "tiny_heldout_pass_at_1_1x": scores[label],
            "tiny_heldout_pass_at_1_2x": 0.125,
            "tiny_heldout_pass_at_1_1x_t0.2": 0.25,
            "evalplus_pass_at_1_1x": 0.0,
            "tokens_per_s_1x": 300.0,
        }
        with tracking.stage_run(f"evaluate-{label}", cfg, parent_run_id=parent) as tr:
            tr.log_metrics(metrics)
        tracking.log_headline_metrics(parent, label, metrics, speed="1x", cfg=cfg.tracking)
    client = MlflowClient(backend)
    assert client.get_run(parent).data.metrics == {
        "eval/tiny_heldout/pass_at_1_grpo": 0.5,
        "eval/tiny_heldout/pass_at_1_instruct": 0.375,
        "eval/tiny_heldout/grpo_change": 0.125,
    }
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert sorted(c.info.run_name for c in children) == ["evaluate-grpo", "evaluate-instruct"]


# ------------------------------------------------------------------------------------------------
# Tracking URI resolution (no server needed)
# ------------------------------------------------------------------------------------------------


def test_default_tracking_uri_is_in_the_project_home_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env
) -> None:
    monkeypatch.chdir(tmp_path)
    isolated_env("MLFLOW_TRACKING_URI", "DIFFUCODER_HOME")
    tcfg = load_config("tiny").tracking
    assert tracking.resolve_tracking_uri(tcfg) == f"sqlite:///{REPO_ROOT / 'mlflow.db'}"  # the checkout
    monkeypatch.setenv("DIFFUCODER_HOME", str(tmp_path / "home"))
    assert tracking.resolve_tracking_uri(tcfg) == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tracking.resolve_tracking_uri(tcfg) == "http://127.0.0.1:1"
    explicit = tcfg.model_copy(update={"tracking_uri": f"sqlite:///{tmp_path / 'other.db'}"})
    assert tracking.resolve_tracking_uri(explicit) == f"sqlite:///{tmp_path / 'other.db'}"


def test_end_pipeline_run_rejects_unknown_status() -> None:
    with pytest.raises(ValueError, match=r"status 'DONE' is not one of FINISHED, FAILED, KILLED"):
        tracking.end_pipeline_run("abc", status="DONE")


def test_flatten_params_nested_and_empty() -> None:
    flat = tracking.flatten_params({"grpo": {"beta": 0.01, "rewards": ["code", "format"]}, "x": {}, "y@z": 1})
    assert flat == {"grpo.beta": "0.01", "grpo.rewards": "['code', 'format']", "x": "{}", "y_at_z": "1"}
