"""The TrainJob builder: CRD-valid output for every stage, with the placement, resources, env and
command a multi-node DeepSpeed stage needs."""

from __future__ import annotations

import copy

import pytest
import yaml

from diffucoder.config import load_config, validate_config
from diffucoder.images import image_ref
from diffucoder.k8s.config import STAGES, KubernetesConfig, Toleration
from diffucoder.k8s.trainjob import CONFIG_FILE, SANDBOX_CLIENT_LABEL, StageJob, build_trainjob, job_name


def _job(stage="pretrain", **kw):
    return StageJob(
        stage,
        "s3://diffucoder/data/packed",
        f"s3://diffucoder/runs/r1/{stage}",
        run_id="KFP-Run_0a1b2c3d4e5f6a",
        **kw,
    )


def _node_patch(tj):
    return tj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"
    ]["spec"]["template"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("preset", ["tiny", "paper-7b"])
def test_every_stage_validates_against_the_crd(crds, stage, preset):
    objs = build_trainjob(
        _job(stage, init_uri="s3://diffucoder/runs/r1/prev/final"), load_config(preset), KubernetesConfig()
    )
    assert crds.errors(objs.trainjob) == []


def test_the_validator_catches_type_errors_and_unknown_fields(crds):
    """Negative control: the schema check is not vacuous."""
    tj = build_trainjob(_job(), load_config("tiny"), KubernetesConfig()).trainjob
    bad_type = copy.deepcopy(tj)
    bad_type["spec"]["trainer"]["numNodes"] = "4"
    typo = copy.deepcopy(tj)
    typo["spec"]["trainer"]["numNode"] = 4
    assert any("numNodes" in e for e in crds.errors(bad_type))
    assert any("numNode" in e for e in crds.errors(typo))


def test_gpu_stage_gets_nodes_gpus_placement_and_secrets():
    k8s = KubernetesConfig.model_validate(
        {
            "trainjob": {
                "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
                "gpus_per_node": 8,
            }
        }
    )
    objs = build_trainjob(_job("pretrain"), load_config("paper-7b"), k8s)
    trainer = objs.trainjob["spec"]["trainer"]
    assert trainer["numNodes"] == 10 and trainer["numProcPerNode"] == 8  # paper Table 1: 10 nodes x 8 H100
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    assert trainer["resourcesPerNode"]["requests"] == trainer["resourcesPerNode"]["limits"]
    assert trainer["image"] == image_ref("trainer")
    pod = _node_patch(objs.trainjob)["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    env = {e["name"]: e for e in trainer["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "diffucoder-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
        "optional": False,
    }
    assert env["MLFLOW_S3_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["key"] == "AWS_ENDPOINT_URL"
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.diffucoder.svc.cluster.local:5000"
    assert not any("value" in e and "SECRET" in e["name"] for e in trainer["env"])  # no secret values inline


def test_cpu_only_job_asks_for_no_gpu():
    k8s = KubernetesConfig.model_validate(
        {"trainjob": {"gpus_per_node": 0, "tolerations": [], "num_nodes": {"instruct": 2}}}
    )
    objs = build_trainjob(_job("instruct"), load_config("tiny"), k8s)
    trainer = objs.trainjob["spec"]["trainer"]
    assert "nvidia.com/gpu" not in trainer["resourcesPerNode"]["limits"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 1
    assert "tolerations" not in _node_patch(objs.trainjob)["spec"]
    assert {"name": "DS_ACCELERATOR", "value": "cpu"} in trainer["env"]


def test_command_runs_the_train_cli_on_the_mounted_resolved_config():
    cfg = load_config("tiny", ["seed=7"])
    objs = build_trainjob(
        _job("midtrain", init_uri="s3://diffucoder/runs/r1/pretrain/final"), cfg, KubernetesConfig()
    )
    trainer = objs.trainjob["spec"]["trainer"]
    assert trainer["command"] == ["torchrun"]
    assert trainer["args"] == [
        "-m",
        "diffucoder.cli",
        "train",
        "--stage",
        "midtrain",
        "--config",
        CONFIG_FILE,
        "--data",
        "s3://diffucoder/data/packed",
        "--out",
        "s3://diffucoder/runs/r1/midtrain",
        "--resume",
        "auto",
        "--init",
        "s3://diffucoder/runs/r1/pretrain/final",
    ]
    # the ConfigMap holds the resolved config, which loads back to the same RunConfig
    assert validate_config(yaml.safe_load(objs.config_map["data"]["config.yaml"])) == cfg
    pod = _node_patch(objs.trainjob)["spec"]
    assert pod["volumes"] == [{"name": "diffucoder-config", "configMap": {"name": objs.name}}]
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] + "/config.yaml" == CONFIG_FILE


def test_only_grpo_nodes_may_call_the_sandbox():
    cfg, k8s = load_config("tiny"), KubernetesConfig()
    grpo = _node_patch(build_trainjob(_job("grpo"), cfg, k8s).trainjob)["metadata"]["labels"]
    pretrain = _node_patch(build_trainjob(_job("pretrain"), cfg, k8s).trainjob)["metadata"]["labels"]
    assert grpo[SANDBOX_CLIENT_LABEL] == "true" and SANDBOX_CLIENT_LABEL not in pretrain


def test_mlflow_run_ids_are_passed_when_known():
    objs = build_trainjob(
        _job(mlflow_run_id="abc", parent_run_id="par"), load_config("tiny"), KubernetesConfig()
    )
    env = {e["name"]: e.get("value") for e in objs.trainjob["spec"]["trainer"]["env"]}
    assert env["MLFLOW_RUN_ID"] == "abc" and env["DIFFUCODER_PARENT_RUN_ID"] == "par"


def test_names_are_deterministic_dns_labels():
    assert job_name("KFP-Run_0a1b2c3d4e5f6a", "instruct") == "diffucoder-kfp-run-0a1b-instruct"
    assert job_name("r", "grpo") == job_name("r", "grpo")
    with pytest.raises(ValueError, match="run_id '___'"):
        job_name("___", "grpo")


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="stage 'finetune' is not one of"):
        build_trainjob(_job("finetune"), load_config("tiny"), KubernetesConfig())
    with pytest.raises(ValueError, match="num_nodes"):
        KubernetesConfig.model_validate({"trainjob": {"num_nodes": {"pretrain": 0}}})
    with pytest.raises(ValueError):
        Toleration(operator="Sometimes")


def test_cli_render_prints_a_crd_valid_trainjob(capsys, crds):
    import argparse

    from diffucoder.k8s import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    argv = ["k8s", "trainjob", "--stage", "instruct", "--data", "s3://b/sft", "--out", "s3://b/out"]
    args = parser.parse_args([*argv, "--run-id", "r-42", "--render", "--config", "tiny", "seed=3"])
    assert args.func(args) == 0
    config_map, trainjob = yaml.safe_load_all(capsys.readouterr().out)
    assert crds.errors(trainjob) == [] and trainjob["metadata"]["name"] == "diffucoder-r-42-instruct"
    assert yaml.safe_load(config_map["data"]["config.yaml"])["seed"] == 3
