"""The one command line that starts a training stage, for local torchrun and for TrainJobs.

``diffucoder train`` with ``--nproc-per-node N > 1`` re-launches itself under torchrun with the
spec built here, and the Kubeflow TrainJob builder (``diffucoder.k8s.trainjob``) should use the same
:func:`train_args`, so every launcher runs the same entry point with the same arguments. Workers
recognise that they run under torchrun by the ``RANK`` variable torchrun sets, and train in-process.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LaunchSpec:
    """argv to execute and the environment additions it needs."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def train_args(
    stage: str,
    config_path: str,
    data_uri: str,
    out_uri: str,
    *,
    init_uri: str | None = None,
    resume: str = "auto",
) -> list[str]:
    """Arguments of ``python -m diffucoder.cli`` for one stage (the resolved config is a YAML file)."""
    args = [
        "train",
        "--stage",
        stage,
        "--config",
        config_path,
        "--data",
        data_uri,
        "--out",
        out_uri,
        "--resume",
        resume,
    ]
    if init_uri:
        args += ["--init", init_uri]
    return args


def torchrun_command(
    train: list[str],
    *,
    nproc_per_node: int = 1,
    nnodes: int = 1,
    cpu: bool = False,
    threads_per_rank: int | None = None,
) -> LaunchSpec:
    """torchrun over ``python -m diffucoder.cli`` with ``train`` (the :func:`train_args` of a stage).

    One node uses ``--standalone`` (torchrun picks a free loopback port). With ``nnodes > 1`` no
    rendezvous flags are passed: torchrun reads PET_NNODES / PET_NODE_RANK / PET_MASTER_ADDR /
    PET_MASTER_PORT, which the Kubeflow Trainer runtime injects into every node.

    Args:
        cpu: add ``DS_ACCELERATOR=cpu`` so DeepSpeed does not probe for CUDA.
        threads_per_rank: OMP/torch threads per rank (CPU ranks would otherwise oversubscribe cores).
    """
    if nproc_per_node < 1 or nnodes < 1:
        raise ValueError(f"nproc_per_node ({nproc_per_node}) and nnodes ({nnodes}) must be >= 1")
    argv = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1:
        argv += ["--standalone", "--nnodes=1"]
    argv += [f"--nproc-per-node={nproc_per_node}", "-m", "diffucoder.cli"]
    argv += train
    env = {}
    if cpu:
        env["DS_ACCELERATOR"] = "cpu"
    if threads_per_rank is not None:
        env["OMP_NUM_THREADS"] = str(threads_per_rank)
    return LaunchSpec(argv, env)


def under_torchrun() -> bool:
    """True inside a torchrun worker (which must train in-process, never launch again)."""
    return "RANK" in os.environ and "LOCAL_RANK" in os.environ
