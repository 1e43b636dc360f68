"""The torchrun command line every launcher shares (local CLI and Kubeflow TrainJob)."""

from __future__ import annotations

import sys

import pytest

from diffucoder.train.launch import torchrun_command, train_args


def test_train_args_match_the_cli():
    from diffucoder.cli import build_parser

    args = train_args(
        "instruct",
        "/etc/c.yaml",
        "s3://b/sft.jsonl",
        "s3://b/out",
        init_uri="s3://b/mid/final",
        resume="none",
    )
    parsed = build_parser("train").parse_args(args)
    assert (parsed.stage, parsed.config, parsed.data, parsed.out, parsed.init, parsed.resume) == (
        "instruct",
        "/etc/c.yaml",
        "s3://b/sft.jsonl",
        "s3://b/out",
        "s3://b/mid/final",
        "none",
    )


PRETRAIN = train_args("pretrain", "c.yaml", "d", "o")


def test_single_node_is_standalone_with_cpu_env():
    spec = torchrun_command(PRETRAIN, nproc_per_node=2, cpu=True, threads_per_rank=1)
    assert spec.argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in spec.argv and "--nproc-per-node=2" in spec.argv
    assert spec.argv[spec.argv.index("-m", 3) + 1] == "diffucoder.cli"
    assert spec.env == {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}


def test_multi_node_leaves_rendezvous_to_pet_variables():
    spec = torchrun_command(PRETRAIN, nproc_per_node=8, nnodes=4)
    assert "--standalone" not in spec.argv and not any(a.startswith("--master") for a in spec.argv)
    with pytest.raises(ValueError, match="nproc_per_node"):
        torchrun_command(PRETRAIN, nproc_per_node=0)
