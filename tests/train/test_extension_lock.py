"""An interrupted first run leaves nothing that blocks the next: reproduced with a real build killed mid-way.

DeepSpeed's CPU backend JIT-builds its shared-memory op into torch's extension cache when a process
group starts. Killing that build leaves torch's lock file behind, and DeepSpeed's own start then
waits on it forever; the trainer's start (:func:`diffucoder.train.distributed.init_distributed`)
must not build, load or wait for the op at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from diffucoder.train.distributed import _free_port

OP = "deepspeed_shm_comm"
BUILD = "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().jit_load()"
DEEPSPEED_START = (
    "import deepspeed; print('imported', flush=True); "
    "deepspeed.init_distributed('gloo', auto_mpi_discovery=False); print('started', flush=True)"
)
TRAINER_START = (
    "import torch.distributed; from diffucoder.train.distributed import init_distributed; "
    "info = init_distributed('cpu'); print('world', info.world_size); torch.distributed.destroy_process_group()"
)


def _env(extensions_dir) -> dict[str, str]:
    """A one-process world on loopback (the trainer's own single-process start sets the same)."""
    return {
        **os.environ,
        "TORCH_EXTENSIONS_DIR": str(extensions_dir),
        "DS_ACCELERATOR": "cpu",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }


def _kill_build_midway(env: dict[str, str], lock) -> None:
    """Start the op's JIT build and SIGKILL it (and its compiler children) once it holds the lock."""
    build = subprocess.Popen(
        [sys.executable, "-c", BUILD], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not lock.exists():
            if build.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the build did not take its lock (exit {build.returncode})")
            time.sleep(0.05)
        time.sleep(1.0)  # let ninja start the compiler
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()


def test_a_killed_extension_build_does_not_block_the_next_training_start(tmp_path):
    extensions = tmp_path / "torch_extensions"
    lock = extensions / OP / "lock"
    env = _env(extensions)
    _kill_build_midway(env, lock)
    assert lock.exists(), "the killed build should have left its lock behind"

    # the failure being guarded against: DeepSpeed's own start, once imported, waits on the stale lock
    stuck = subprocess.Popen(
        [sys.executable, "-c", DEEPSPEED_START],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert stuck.stdout.readline().strip() == "imported"
        with pytest.raises(subprocess.TimeoutExpired):
            stuck.wait(timeout=8)
    finally:
        stuck.kill()
        stuck.wait()

    started = subprocess.run(
        [sys.executable, "-c", TRAINER_START], env=env, capture_output=True, text=True, timeout=90
    )
    assert started.returncode == 0, started.stderr[-2000:]
    assert "world 1" in started.stdout
    assert not list((extensions / OP).glob("*.so")), "the trainer's start built the op"
