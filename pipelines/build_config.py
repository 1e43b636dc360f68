"""Typed settings for building the KFP pipeline: GPU pool placement, timeouts, retries, fan-out.

These shape the compiled IR (pipelines/diffucoder.yaml), not a run: they are read when the DAG is
built (``make compile``), so they are not part of RunConfig. The GPU pool labels and taints are
cluster-specific; the defaults match manifests/base and the paper's H100 nodes.
"""

from __future__ import annotations

from pydantic import Field

from diffucoder.config_base import StrictModel
from diffucoder.k8s.config import Toleration
from diffucoder.k8s.sandbox_deploy import PORT, SHARED_NAME


class PipelineBuildConfig(StrictModel):
    """Where and how the pipeline's tasks run on the cluster."""

    # --- GPU pool ---
    gpu_resource: str = Field("nvidia.com/gpu", description="accelerator resource name of the GPU pool")
    gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"diffucoder.io/pool": "gpu-h100"},
        description="node labels of the GPU pool (set_accelerator_type alone picks no pool)",
    )
    gpu_tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        description="tolerations for the GPU pool's taints",
    )
    shm_size: str = Field("64Gi", description="memory-backed /dev/shm for DataLoader workers and NCCL")
    gpu_pod_cpu: str = Field("16", description="CPU request of an in-pod GPU task")
    gpu_pod_memory: str = Field("200Gi", description="memory request of an in-pod GPU task (shm counts here)")
    eval_gpus: int = Field(1, ge=1, description="GPUs of an evaluation pod")

    # --- timeouts and retries ---
    stage_timeout_s: dict[str, int] = Field(
        default_factory=lambda: {
            "pretrain": 14 * 86400,
            "midtrain": 7 * 86400,
            "instruct": 3 * 86400,
            "grpo": 3 * 86400,
        },
        description="pod activeDeadlineSeconds per training stage (launcher pods follow their TrainJob)",
    )
    eval_timeout_s: int = Field(12 * 3600, ge=60)
    retries: int = Field(
        2, ge=0, description="retries of data, control and launcher tasks (transient failures)"
    )

    # --- data fan-out ---
    shard_parallelism: int = Field(16, ge=1, description="filter/finalize pods at once (ParallelFor)")
    data_cpu: str = "2"
    data_memory: str = "8Gi"

    # --- cluster plumbing ---
    s3_secret: str = Field("diffucoder-s3", description="Secret with the object store's AWS_* keys")
    s3_secret_env: dict[str, str] = Field(
        default_factory=lambda: {
            k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
        },
        description="Secret key -> env variable in every pod that reads or writes artifacts",
    )
    shared_sandbox_url: str = Field(
        f"http://{SHARED_NAME}.diffucoder-sandbox.svc.cluster.local:{PORT}",
        description="default sandbox_url (the shared sandbox Service of manifests/base/sandbox)",
    )
