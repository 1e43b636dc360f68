"""Multi-rank DeepSpeed on CPU (gloo): 2 ranks train the model; preemption + resume is exact.

The default suite keeps one fast 2-rank ZeRO-2 run; ZeRO-3 and the kill -9 / resume runs are slow.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from train_helpers import (
    REPO_ROOT,
    final_state_dict,
    fixed_mask_loss,
    initial_model,
    run_train,
    small_overrides,
    train_cmd,
    train_env,
)

from diffucoder.model import load_model


def _train_two_ranks(tmp_path, packed_dir, tracking_uri, zero_stage, steps=16):
    out = tmp_path / f"zero{zero_stage}"
    overrides = small_overrides(
        "pretrain",
        **{
            "pretrain.max_steps": steps,
            "pretrain.zero_stage": zero_stage,
            "pretrain.save_every_steps": steps,
            "pretrain.lr": 1e-2,
        },
    )
    run_train(train_cmd("pretrain", packed_dir, str(out), overrides, nproc=2), train_env(tracking_uri))
    return out, overrides


def _assert_trained(out: Path, overrides, packed_dir):
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2
    state = json.loads(
        (out / "checkpoints" / f"step-{result['steps']:06d}" / "trainer_state.json").read_text()
    )
    assert state["data"]["world_size"] == 2
    assert sorted(
        p.name for p in (out / "checkpoints" / f"step-{result['steps']:06d}" / "rng").iterdir()
    ) == ["rank-00000.pt", "rank-00001.pt"]
    trained, _ = load_model(str(out / "final"))
    before = fixed_mask_loss(initial_model(overrides, packed_dir), packed_dir)
    after = fixed_mask_loss(trained, packed_dir)
    assert after < 0.95 * before, (before, after)  # same rows, same masks: a paired comparison


def test_two_rank_zero2_trains(tmp_path, packed_dir, mlflow_sqlite):
    out, overrides = _train_two_ranks(tmp_path, packed_dir, mlflow_sqlite, zero_stage=2)
    _assert_trained(out, overrides, packed_dir)


@pytest.mark.slow
def test_two_rank_zero3_trains(tmp_path, packed_dir, mlflow_sqlite):
    out, overrides = _train_two_ranks(tmp_path, packed_dir, mlflow_sqlite, zero_stage=3)
    _assert_trained(out, overrides, packed_dir)


def _wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    target = out / "checkpoints" / f"step-{step:06d}" / "MANIFEST.json"
    deadline = time.monotonic() + timeout
    while not target.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before step {step}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no checkpoint at step {step} after {timeout}s")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [0, 2, 3])
def test_kill9_and_resume_matches_uninterrupted(tmp_path, packed_dir, mlflow_sqlite, zero_stage):
    """kill -9 the whole 2-rank job at a random point, resume with --resume auto: same final weights.

    Tolerance: exact equality. Every random draw comes from generators keyed by (seed, rank, step),
    the data position and DeepSpeed's fp32 optimizer state are restored bit for bit, and gloo
    reductions on CPU run in a fixed order, so the resumed run repeats the same float operations.
    """
    steps = 30  # ZeRO-0 steps of the small model take milliseconds: leave enough to kill into
    overrides = small_overrides(
        "pretrain",
        **{"pretrain.max_steps": steps, "pretrain.save_every_steps": 3, "pretrain.zero_stage": zero_stage},
    )
    env = train_env(mlflow_sqlite)
    reference = tmp_path / "uninterrupted"
    run_train(train_cmd("pretrain", packed_dir, str(reference), overrides, nproc=2), env)

    out = tmp_path / "preempted"
    cmd = train_cmd("pretrain", packed_dir, str(out), overrides, nproc=2)
    rng = random.Random()
    kill_after = rng.choice([3, 6])  # >= 6 steps and 2 saves still to go
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_step(out, kill_after, proc)
        time.sleep(rng.uniform(0.0, 0.3))  # land in one of the next steps, possibly mid-save
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "result.json").exists(), "the job finished before it was killed; kill earlier"

    run_train(cmd, env)  # --resume auto
    resumed = json.loads((out / "result.json").read_text())
    assert resumed["steps"] == steps
    got, want = final_state_dict(str(out)), final_state_dict(str(reference))
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), (
            f"{name} differs after resume (killed after step {kill_after})"
        )
