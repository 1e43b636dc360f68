"""Typed config for the ``k8s`` section: where and how stages run on a cluster.

Owned by diffucoder.k8s. Defaults match manifests/base (namespaces, Secret, runtime and
PriorityClass names) and the paper's hardware (arXiv 2506.20639, Table 1: stage 1 on 10 nodes x 8
H100, stages 2-3 on 8 nodes, coupled-GRPO on one node).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from diffucoder.config_base import StrictModel
from diffucoder.train.config import STAGES


class Toleration(StrictModel):
    """A pod toleration (same fields as the Kubernetes object)."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class TrainJobConfig(StrictModel):
    """How a training stage becomes a Kubeflow Trainer v2 TrainJob."""

    runtime: str = Field("diffucoder-torch-distributed", description="ClusterTrainingRuntime name")
    num_nodes: dict[str, int] = Field(
        default_factory=lambda: {"pretrain": 10, "midtrain": 8, "instruct": 8, "grpo": 1},
        description="nodes per stage (paper Table 1)",
    )
    gpus_per_node: int = Field(8, ge=0, description="nvidia.com/gpu per node; 0 = CPU-only (one process)")
    cpu_per_node: str = Field("96", description="CPU request = limit per node")
    memory_per_node: str = Field("1600Gi", description="memory request = limit per node")
    node_selector: dict[str, str] = Field(default_factory=dict, description="labels of the GPU node pool")
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        description="tolerations for the GPU pool's taints",
    )
    active_deadline_s: int | None = Field(None, ge=1, description="TrainJob activeDeadlineSeconds")
    timeout_s: float = Field(7 * 24 * 3600, gt=0, description="launcher gives up following after this")
    poll_interval_s: float = Field(30, gt=0, description="seconds between status reads")

    @field_validator("num_nodes")
    @classmethod
    def _known_stages(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if k not in STAGES or v < 1}
        if bad:
            raise ValueError(f"num_nodes {bad}: keys must be among {STAGES} and values >= 1")
        return value


class SandboxDeployConfig(StrictModel):
    """A per-run sandbox Deployment + Service (same pod template as manifests/base/sandbox)."""

    replicas: int = Field(2, ge=1)
    cpu: str = Field("4", description="CPU request = limit per pod (Guaranteed QoS)")
    memory: str = Field("8Gi", description="memory request = limit per pod; /tmp (memory-backed) counts here")
    tmp_size: str = Field("2Gi", description="size limit of the memory-backed /tmp")
    runtime_class: str | None = Field(None, description="e.g. 'gvisor' where nodes have runsc")
    ready_timeout_s: float = Field(600, gt=0)


class KubernetesConfig(StrictModel):
    """Cluster settings shared by the TrainJob launcher and the sandbox deployer."""

    namespace: str = Field("diffucoder", description="where pipelines and TrainJobs run")
    sandbox_namespace: str = Field("diffucoder-sandbox", description="restricted namespace of sandbox pods")
    image_registry: str | None = Field(
        None, description="default: $DIFFUCODER_IMAGE_REGISTRY or ghcr.io/diffucoder"
    )
    image_tag: str | None = Field(None, description="default: the package version")
    s3_secret: str = Field("diffucoder-s3", description="Secret with AWS_* keys for the object store")
    mlflow_tracking_uri: str = "http://mlflow.diffucoder.svc.cluster.local:5000"
    trainjob: TrainJobConfig = TrainJobConfig()
    sandbox: SandboxDeployConfig = SandboxDeployConfig()
