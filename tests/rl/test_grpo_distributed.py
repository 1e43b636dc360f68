"""Two DeepSpeed ranks on CPU (gloo): ZeRO-2 with kill -9 and resume, and ZeRO-3 end to end (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_grpo_stage import _overrides
from train_helpers import REPO_ROOT, train_cmd, train_env

pytestmark = pytest.mark.slow


def _cmd(root: Path, out: Path, overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    cmd = train_cmd("grpo", str(root / "rl.jsonl"), str(out), overrides, nproc=2, init=str(root / "init"))
    return cmd, train_env(f"sqlite:///{root}/mlflow-dist.db")


def test_two_ranks_zero2_kill_and_resume(grpo_inputs):
    out = grpo_inputs / "dist-z2"
    # enough steps after the first checkpoint that the kill lands mid-run: 2 ranks of this model run a
    # step in ~0.2 s, and a 6-step run could finish (and prune step 2) between two polls
    cmd, env = _cmd(grpo_inputs, out, _overrides(**{"grpo.max_steps": 24}))
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    first = out / "checkpoints" / "step-000002" / "MANIFEST.json"
    deadline = time.monotonic() + 900
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.exists(), (
        proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "no checkpoint in time"
    )
    os.killpg(proc.pid, signal.SIGKILL)  # every rank and the sandbox server die at once
    proc.wait()
    assert not (out / "result.json").exists()
    killed_run = json.loads((first.parent / "trainer_state.json").read_text())["run_id"]
    done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 24 and result["world_size"] == 2
    assert result["run_id"] == killed_run  # continued from a checkpoint, not started afresh
    state = json.loads((out / "checkpoints" / "step-000024" / "trainer_state.json").read_text())
    assert (
        state["data"]["round"] == 12
        and (out / "checkpoints" / "step-000024" / "grpo" / "reference.pt").is_file()
    )


def test_two_ranks_zero3_builds_reference_and_trains(grpo_inputs):
    out = grpo_inputs / "dist-z3"
    cmd, env = _cmd(grpo_inputs, out, _overrides(**{"grpo.zero_stage": 3}))
    done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    state = json.loads((out / "checkpoints" / "step-000004" / "trainer_state.json").read_text())
    assert state["history"][-1]["kl"] >= 0 and (out / "final" / "MANIFEST.json").is_file()
