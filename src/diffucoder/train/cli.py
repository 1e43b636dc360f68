"""``diffucoder train``: run stage 1-4 training in-process, or under torchrun with N ranks.

    diffucoder train --stage pretrain --config tiny --data runs/tiny/data/packed --out runs/tiny/pretrain
    diffucoder train --stage instruct --config tiny --data runs/tiny/data/sft.jsonl \\
        --init runs/tiny/midtrain/final --out runs/tiny/instruct --nproc-per-node 2 instruct.max_steps=50
    diffucoder train --stage grpo --config tiny --data runs/tiny/data/tasks/rl/train.jsonl \
        --init runs/tiny/instruct/final --out runs/tiny/grpo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from diffucoder.config_cli import add_config_args
from diffucoder.train.config import STAGES


def _resume_arg(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("--resume must be auto, none or a checkpoint URI")
    return text


def _launch_torchrun(args: argparse.Namespace, cfg) -> int:
    from diffucoder.train.checkpoint import local_root_for
    from diffucoder.train.launch import torchrun_command, train_args

    config_path = local_root_for(args.out) / f"launch-{args.stage}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(cfg.to_yaml())
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not _cuda_available())
    threads = max(1, (os.cpu_count() or 1) // args.nproc_per_node) if cpu else None
    spec = torchrun_command(
        train_args(args.stage, str(config_path), args.data, args.out, init_uri=args.init, resume=args.resume),
        nproc_per_node=args.nproc_per_node,
        cpu=cpu,
        threads_per_rank=threads,
    )
    return subprocess.call(spec.argv, env={**os.environ, **spec.env})


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _train(args: argparse.Namespace) -> int:
    from diffucoder.config import load_config
    from diffucoder.inputs import require_exists, require_model
    from diffucoder.train.launch import under_torchrun

    require_exists(args.data, flag="--data", what="training data")
    if args.init:
        require_model(args.init, flag="--init")
    cfg = load_config(args.config, args.overrides)
    worker = under_torchrun()
    if not worker or os.environ.get("RANK") == "0":
        print(cfg.to_yaml(), end="", file=sys.stderr)  # resolve once, print at start
    if args.nproc_per_node > 1 and not worker:
        return _launch_torchrun(args, cfg)
    from diffucoder.train.run import run

    result = run(cfg, args.stage, args.data, args.out, init=args.init, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":
        print(
            json.dumps(
                {
                    "stage": result.stage,
                    "steps": result.steps,
                    "final": result.final_model_uri,
                    "loss": result.metrics.get("loss"),
                    "run_id": result.run_id,
                }
            )
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train", help="stages 1-4: pretrain, mid-train, instruct-tune, coupled-GRPO (DeepSpeed)"
    )
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument(
        "--data",
        required=True,
        help="packed shard dir (stages 1-2), SFT JSONL/Parquet (stage 3) or RL problems (stage 4)",
    )
    parser.add_argument("--out", required=True, help="output dir or s3:// prefix of this stage")
    parser.add_argument("--init", default=None, help="model to start from (a previous stage's final/)")
    parser.add_argument(
        "--resume",
        default="auto",
        type=_resume_arg,
        help="auto (newest complete checkpoint under --out), none, or a checkpoint URI",
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        help="ranks on this node; > 1 re-launches under torchrun (gloo on CPU)",
    )
    add_config_args(parser)
    parser.set_defaults(func=_train)
