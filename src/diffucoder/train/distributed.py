"""Process-group set-up for training: under torchrun (N ranks) or as a plain single process.

Both paths go through DeepSpeed: a single process is simply a world of size 1 whose rendezvous
variables we fill in (loopback, a free port), so there is one code path to test. The backend is
NCCL on GPU and gloo on CPU, which is how the tests run 2 ranks on a laptop (ARCHITECTURE.md).
DeepSpeed picks its accelerator from ``DS_ACCELERATOR``; we set it to ``cpu`` when no GPU is used,
otherwise it would probe for CUDA extensions.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

RENDEZVOUS_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_device(preference: str, local_rank: int) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is available, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda requested but torch.cuda.is_available() is False")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join (or, alone, create) the process group and return this rank's :class:`DistInfo`."""
    if "RANK" not in os.environ:  # single process without torchrun: a world of one on loopback
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    missing = [v for v in RENDEZVOUS_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"RANK is set but {missing} are not; launch with torchrun (see diffucoder.train.launch)"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    device = resolve_device(device_preference, local_rank)
    if device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    else:
        torch.cuda.set_device(device)
    import deepspeed  # after DS_ACCELERATOR is set: the accelerator is chosen at import

    if device.type == "cpu":
        _skip_shared_memory_comm_build()

    if not dist.is_initialized():
        deepspeed.init_distributed(
            dist_backend="nccl" if device.type == "cuda" else "gloo", auto_mpi_discovery=False
        )
    return DistInfo(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=device
    )


def _skip_shared_memory_comm_build() -> None:
    """Keep DeepSpeed from JIT-compiling its CPU shared-memory all-reduce op at process-group start.

    DeepSpeed's torch backend builds ``deepspeed_shm_comm`` with ninja into torch's extension cache
    (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) the first time any process
    group starts on a CPU: ~100 s on 2 cores. Only DeepSpeed's tensor-parallel *inference*
    all-reduce uses the op; training collectives (gradient all-reduce, ZeRO) go through
    torch.distributed/gloo. A build killed mid-way (Ctrl-C during a first run) leaves torch's
    build lock file behind, and every later start then waits on it without a time limit or a
    message. DeepSpeed skips the op when its probe table says it is not compatible
    (``deepspeed.comm.torch.build_shm_op``); that table is a module-level dict DeepSpeed keeps for
    the process, so marking the op there means nothing is built, loaded or waited for.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (a picklable value)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def mean_across_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average each value over all ranks (for logging the global loss, not one rank's)."""
    if not values or not dist.is_initialized() or dist.get_world_size() == 1:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist(), strict=True))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (a collective: all ranks must call it)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    tensor = torch.tensor([float(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
