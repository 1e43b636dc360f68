"""End to end: ``diffucoder train --stage grpo`` on a small model with a real local sandbox subprocess.

The run starts its own sandbox server (no URL given), samples rollouts with the diffusion sampler,
scores them in the sandbox, trains with the coupled estimator and writes the stage's outputs; a
second invocation resumes from the last checkpoint, reference model included.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from train_helpers import REPO_ROOT, train_cmd, train_env


def _overrides(**extra) -> list[str]:
    base = {
        "grpo.max_steps": 4,
        "grpo.micro_batch_size": 4,
        "grpo.grad_accum_steps": 2,
        "grpo.num_generations": 4,
        "grpo.num_iterations": 2,
        "grpo.save_every_steps": 2,
        "grpo.log_every_steps": 2,
        "grpo.ref_sync_steps": 2,
        "grpo.rollout.max_completion_length": 16,
        "grpo.rollout.steps": 8,
        "grpo.rollout.max_prompt_length": 48,
        "grpo.lr": 1e-3,
        # dynamic sampling on: the resume check below then also covers the redrawn prompts
        "grpo.redraw_flat_groups": 1,
        "sandbox.workers": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _run(root: Path, out: Path, overrides: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = train_cmd("grpo", str(root / "rl.jsonl"), str(out), overrides, init=str(root / "init"))
    env = train_env(f"sqlite:///{root}/mlflow.db")
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def _sandbox_servers() -> set[str]:
    """Process ids of every running `sandbox serve` on the machine."""
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return {line.split(None, 1)[0] for line in listing.splitlines() if "sandbox serve" in line}


def test_grpo_stage_runs_with_local_sandbox_and_resumes(grpo_inputs):
    out = grpo_inputs / "out"
    servers_before = _sandbox_servers()
    proc = _run(grpo_inputs, out, _overrides())
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 4 and Path(result["final_model_uri"], "MANIFEST.json").is_file()
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    assert [c.name for c in ckpts] == ["step-000002", "step-000004"]
    state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
    assert state["data"]["round"] == 2  # 4 steps / mu 2
    assert (ckpts[-1] / "grpo" / "reference.pt").is_file()
    logged = state["history"][-1]
    first, last = result["metrics"]["pass_rate/first_quarter"], result["metrics"]["pass_rate/last_quarter"]
    # 2 logged rounds: one each (weighted by its groups drawn, hence approx)
    assert (first, last) == (
        pytest.approx(state["history"][0]["pass_rate"]),
        pytest.approx(logged["pass_rate"]),
    )
    for key in (
        "loss",
        "kl",
        "clip_frac",
        "reward/total/mean",
        "reward/code/mean",
        "reward/format/std",
        "pass_rate",
        "format_rate",
        "completion_length",
        "arness/local@1",
        "round/rollout_s",
        "frac_reward_zero_std",
        "round/groups_drawn",
        "time/policy_estimate_s",
    ):
        assert key in logged, key
    # one draw of 2 groups, plus one redraw whenever a round lacks groups with reward variance
    assert logged["round/groups_drawn"] == (2 if logged["frac_reward_zero_std"] == 0 else 4)
    assert 0 <= logged["reward/total/mean"] <= 2.5
    # the sandbox server the stage started (its own child, in a session of its own) is gone
    assert _sandbox_servers() <= servers_before

    # resume: drop the last checkpoint and the outputs, rerun; it continues from step 2 (stream position,
    # reference weights, optimizer) and must reproduce the uninterrupted run's final weights
    from safetensors.torch import load_file

    first = load_file(str(out / "final" / "model.safetensors"))
    ref_saved = torch.load(ckpts[0] / "grpo" / "reference.pt", weights_only=True)
    name = next(k for k in ref_saved if k.endswith("mlp.up_proj.weight"))
    assert not torch.equal(ref_saved[name], first[name.removeprefix("hf.")])  # the reference is its own state
    import shutil

    shutil.rmtree(ckpts[-1])
    shutil.rmtree(out / "final")
    (out / "result.json").unlink()
    proc = _run(grpo_inputs, out, _overrides())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "result.json").read_text())["steps"] == 4
    again = load_file(str(out / "final" / "model.safetensors"))
    assert all(torch.allclose(first[k], again[k], atol=1e-6) for k in first)


def test_unreachable_sandbox_fails_fast(grpo_inputs):
    proc = _run(
        grpo_inputs, grpo_inputs / "bad", _overrides(**{"sandbox.url": "http://127.0.0.1:9"}), timeout=120
    )
    assert proc.returncode != 0
    assert "127.0.0.1:9" in proc.stderr and "unreachable" in proc.stderr
