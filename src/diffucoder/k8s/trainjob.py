"""Build the Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org/v1alpha1) for one training stage.

A pure function of (stage, RunConfig, KubernetesConfig, URIs): no API calls, so the output is
unit-tested and validated offline against the CRD schema. The job references our
ClusterTrainingRuntime (manifests/base/training/runtime.yaml, torch mlPolicy): the Trainer
controller injects PET_NNODES / PET_NODE_RANK / PET_MASTER_ADDR, so ``torchrun`` needs no
rendezvous flags and DeepSpeed reads the torch.distributed environment (no SSH, no MPI).

The resolved RunConfig travels in a ConfigMap mounted at /etc/diffucoder/config.yaml, so every
node trains from exactly the config the pipeline resolved (reproducibility rule: resolve once).
Field shapes follow Trainer v2.3 (``runtimePatches``, which replaced ``podSpecOverrides``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from diffucoder.config import RunConfig
from diffucoder.images import image_ref
from diffucoder.k8s.config import STAGES, KubernetesConfig
from diffucoder.train.launch import train_args

API_GROUP = "trainer.kubeflow.org"
API_VERSION = "v1alpha1"
PLURAL = "trainjobs"
PATCH_MANAGER = "diffucoder.io/launcher"
CONFIG_DIR = "/etc/diffucoder"
CONFIG_FILE = f"{CONFIG_DIR}/config.yaml"
# Pods carrying this label may reach the sandbox Service (manifests/base/sandbox/networkpolicy.yaml).
SANDBOX_CLIENT_LABEL = "diffucoder.io/sandbox-client"
# Object-store settings every node reads from the Secret named by KubernetesConfig.s3_secret.
_S3_ENV_KEYS = {
    "AWS_ACCESS_KEY_ID": ("AWS_ACCESS_KEY_ID", False),
    "AWS_SECRET_ACCESS_KEY": ("AWS_SECRET_ACCESS_KEY", False),
    "AWS_DEFAULT_REGION": ("AWS_DEFAULT_REGION", True),
    "AWS_ENDPOINT_URL": ("AWS_ENDPOINT_URL", True),
    "MLFLOW_S3_ENDPOINT_URL": ("AWS_ENDPOINT_URL", True),  # MLflow's own name for the same endpoint
}


@dataclass(frozen=True)
class StageJob:
    """What one stage needs besides the configs: where its inputs are and where it writes."""

    stage: str
    data_uri: str
    out_uri: str
    run_id: str  # the pipeline run (KFP run id); names and labels the job
    init_uri: str | None = None
    resume: str = "auto"
    mlflow_run_id: str | None = None  # the stage's MLflow run, resumed by the trainer
    parent_run_id: str | None = None  # the pipeline's parent MLflow run


@dataclass(frozen=True)
class TrainJobObjects:
    """The objects to create, in order: the config ConfigMap, then the TrainJob."""

    config_map: dict[str, Any]
    trainjob: dict[str, Any]

    @property
    def name(self) -> str:
        return self.trainjob["metadata"]["name"]


def job_name(run_id: str, stage: str) -> str:
    """Deterministic DNS-1035 name, so a retried launcher finds its job instead of duplicating it."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")[:12].strip("-")
    if not slug:
        raise ValueError(f"run_id {run_id!r} has no letters or digits to name a TrainJob with")
    return f"diffucoder-{slug}-{stage}"


def trainer_command(job: StageJob) -> tuple[list[str], list[str]]:
    """(command, args) of the node container: torchrun over the same ``diffucoder train`` arguments
    that local runs use (:func:`diffucoder.train.launch.train_args`, one entry point everywhere).

    No rendezvous flags: torchrun reads nnodes/nproc/rank/master from the PET_* variables the
    runtime injects.
    """
    return ["torchrun"], [
        "-m",
        "diffucoder.cli",
        *train_args(
            job.stage, CONFIG_FILE, job.data_uri, job.out_uri, init_uri=job.init_uri, resume=job.resume
        ),
    ]


def _env(job: StageJob, cfg: RunConfig, k8s: KubernetesConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "MLFLOW_TRACKING_URI", "value": cfg.tracking.tracking_uri or k8s.mlflow_tracking_uri},
        {"name": "MLFLOW_EXPERIMENT_NAME", "value": cfg.tracking.experiment},
        {"name": "DIFFUCODER_RUN_ID", "value": job.run_id},
    ]
    if job.mlflow_run_id:
        env.append({"name": "MLFLOW_RUN_ID", "value": job.mlflow_run_id})
    if job.parent_run_id:
        env.append({"name": "DIFFUCODER_PARENT_RUN_ID", "value": job.parent_run_id})
    if not k8s.trainjob.gpus_per_node:
        env.append({"name": "DS_ACCELERATOR", "value": "cpu"})  # DeepSpeed must not probe for CUDA
    for name, (key, optional) in _S3_ENV_KEYS.items():
        ref = {"name": k8s.s3_secret, "key": key, "optional": optional}
        env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env


def _resources(k8s: KubernetesConfig) -> dict[str, Any]:
    tj = k8s.trainjob
    amounts: dict[str, Any] = {"cpu": tj.cpu_per_node, "memory": tj.memory_per_node}
    if tj.gpus_per_node:
        amounts["nvidia.com/gpu"] = tj.gpus_per_node
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _labels(job: StageJob) -> dict[str, str]:
    run_label = re.sub(r"[^A-Za-z0-9_.-]+", "-", job.run_id)[:63].strip("-_.")
    return {
        "app.kubernetes.io/part-of": "diffucoder",
        "app.kubernetes.io/component": "trainer",
        "diffucoder.io/run-id": run_label,
        "diffucoder.io/stage": job.stage,
    }


def _runtime_patch(name: str, job: StageJob, k8s: KubernetesConfig) -> dict[str, Any]:
    """Placement, the config volume and the sandbox-client label, patched onto the runtime's node pods."""
    tj = k8s.trainjob
    pod_spec: dict[str, Any] = {
        "volumes": [{"name": "diffucoder-config", "configMap": {"name": name}}],
        "containers": [
            {
                "name": "node",
                "volumeMounts": [{"name": "diffucoder-config", "mountPath": CONFIG_DIR, "readOnly": True}],
            }
        ],
    }
    if tj.node_selector:
        pod_spec["nodeSelector"] = dict(tj.node_selector)
    if tj.tolerations:
        pod_spec["tolerations"] = [t.model_dump(exclude_none=True) for t in tj.tolerations]
    # GRPO nodes call the sandbox; the label is what its NetworkPolicy admits.
    pod_labels = _labels(job) | ({SANDBOX_CLIENT_LABEL: "true"} if job.stage == "grpo" else {})
    return {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {
                                "spec": {"template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}}
                            },
                        }
                    ]
                }
            }
        },
    }


def build_trainjob(job: StageJob, cfg: RunConfig, k8s: KubernetesConfig) -> TrainJobObjects:
    """The ConfigMap (resolved config) and the TrainJob that runs ``job.stage`` on the cluster.

    Raises:
        ValueError: unknown stage, or a run id that cannot name a Kubernetes object.
    """
    if job.stage not in STAGES:
        raise ValueError(f"stage {job.stage!r} is not one of {STAGES}")
    name = job_name(job.run_id, job.stage)
    tj = k8s.trainjob
    num_nodes = tj.num_nodes.get(job.stage, 1)
    command, args = trainer_command(job)
    labels = _labels(job)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": labels},
        "data": {"config.yaml": cfg.to_yaml()},
    }
    spec: dict[str, Any] = {
        "runtimeRef": {"name": tj.runtime, "apiGroup": API_GROUP, "kind": "ClusterTrainingRuntime"},
        "trainer": {
            "image": image_ref("trainer", k8s.image_registry, k8s.image_tag),
            "command": command,
            "args": args,
            "env": _env(job, cfg, k8s),
            "numNodes": num_nodes,
            # One process per GPU; a CPU-only job runs one process per node.
            "numProcPerNode": max(tj.gpus_per_node, 1),
            "resourcesPerNode": _resources(k8s),
        },
        "runtimePatches": [_runtime_patch(name, job, k8s)],
    }
    if tj.active_deadline_s:
        spec["activeDeadlineSeconds"] = tj.active_deadline_s
    trainjob = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": labels},
        "spec": spec,
    }
    return TrainJobObjects(config_map=config_map, trainjob=trainjob)
