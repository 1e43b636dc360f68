"""Helpers shared by the trainer tests: tiny-run overrides and running ``diffucoder train`` as a subprocess.

Training runs in a subprocess (or under torchrun) rather than in the pytest process: DeepSpeed and
torch.distributed keep process-global state that must not leak between tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SEQ_LEN = 32
SFT_LEN = 256  # longest tiny-task row is ~200 tokens with the 512-token test vocab


def small_overrides(stage: str = "pretrain", **extra) -> list[str]:
    """A model and stage much smaller than the tiny preset: each optimizer step takes milliseconds."""
    base = {
        "model.hidden_size": 32,
        "model.num_hidden_layers": 2,
        "model.num_attention_heads": 2,
        "model.num_key_value_heads": 1,
        "model.intermediate_size": 64,
        "model.max_position_embeddings": 512,
        f"{stage}.lr": 3e-3,
        f"{stage}.warmup_steps": 2,
        f"{stage}.warmup_ratio": None,
        f"{stage}.max_steps": 8,
        f"{stage}.epochs": None,
        f"{stage}.micro_batch_size": 4,
        f"{stage}.seq_len": SEQ_LEN if stage != "instruct" else SFT_LEN,
        f"{stage}.anneal_steps": 4 if stage == "pretrain" else 0,
        f"{stage}.causal_steps": 0,  # the tiny preset's causal-LM phase would cover all 8 steps
        f"{stage}.save_every_steps": 4,
        f"{stage}.log_every_steps": 2,
    }
    base.update(extra)
    return [
        f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
        for k, v in base.items()
    ]


def train_env(tracking_uri: str, threads: int = 1) -> dict[str, str]:
    """Environment for a training subprocess: loopback-only tracking, no inherited rank variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        OMP_NUM_THREADS=str(threads),
        DS_ACCELERATOR="cpu",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def train_cmd(
    stage: str,
    data: str,
    out: str,
    overrides: list[str],
    nproc: int = 1,
    init: str | None = None,
    resume: str = "auto",
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "diffucoder.cli",
        "train",
        "--stage",
        stage,
        "--config",
        "tiny",
        "--data",
        data,
        "--out",
        out,
        "--resume",
        resume,
        "--nproc-per-node",
        str(nproc),
    ]
    if init:
        cmd += ["--init", init]
    return cmd + overrides


def run_train(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def final_state_dict(out: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(out) / "final" / "model.safetensors"))


def fixed_mask_loss(model, packed_dir: str, n_batches: int = 4, batch_size: int = 8) -> float:
    """ELBO of ``model`` on the first packed rows under masks drawn from a fixed seed.

    The same rows and masks for every model, so two models' values compare like for like (the
    per-step training loss is too noisy for that: t and the masks are redrawn every step).
    """
    import numpy as np

    from diffucoder.train.objective import elbo_loss, forward_noise
    from diffucoder.train.packed_data import PackedShards

    source = PackedShards(packed_dir, SEQ_LEN, model.config.vocab_size, Path(packed_dir) / "cache")
    gen = torch.Generator().manual_seed(1234)
    total = 0.0
    with torch.no_grad():
        for b in range(n_batches):
            rows = [source.get(i)["input_ids"] for i in range(b * batch_size, (b + 1) * batch_size)]
            ids = torch.from_numpy(np.stack(rows))
            noised = forward_noise(ids, None, model.mask_token_id, generator=gen)
            loss, _ = elbo_loss(model(noised.noisy_ids), ids, noised.masked, noised.t)
            total += float(loss)
    return total / n_batches


def initial_model(overrides: list[str], packed_dir: str):
    """The from-scratch model a pretrain run with these overrides starts from (same seed, same init)."""
    from diffucoder.config import load_config
    from diffucoder.train.run import load_start_model

    model, _ = load_start_model(load_config("tiny", overrides), "pretrain", packed_dir, None)
    return model.float().eval()
