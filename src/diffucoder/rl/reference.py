"""The frozen reference policy of the KL term, and its periodic sync (paper Algorithm 1;
TRL's ``SyncRefModelCallback``).

The reference is our own copy of the starting policy, taken *before* DeepSpeed wraps the policy:
under ZeRO-3 ``deepspeed.initialize`` partitions the policy's parameters in place, and TRL's way
out (reloading with ``AutoModelForCausalLM``) does not rebuild a diffusion LM. The copy is a full,
unpartitioned replica on every rank, kept in eval mode without gradients.

Sync every ``ref_sync_steps`` optimizer steps: ``ref <- alpha * policy + (1 - alpha) * ref``
(TRL's mixup, alpha = 0.6 in the released run); alpha = 1 is Algorithm 1's hard copy. Under ZeRO-3
the policy's shards are gathered for the copy (:func:`gathered`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn


def make_reference(policy: nn.Module) -> nn.Module:
    """A frozen deep copy of ``policy`` (call before DeepSpeed initialises the policy)."""
    ref = copy.deepcopy(policy)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


@contextlib.contextmanager
def gathered(module: nn.Module, zero_stage: int) -> Iterator[None]:
    """Full parameters of a (possibly ZeRO-3 partitioned) module inside the block, read-only."""
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            yield
    else:
        yield


@torch.no_grad()
def sync_reference(ref: nn.Module, policy: nn.Module, alpha: float, zero_stage: int) -> None:
    """``ref <- alpha * policy + (1 - alpha) * ref``, parameter by parameter (matched by name)."""
    ref_params = dict(ref.named_parameters())
    with gathered(policy, zero_stage):
        for name, p in policy.named_parameters():
            target = ref_params[name]
            target.mul_(1 - alpha).add_(p.detach().to(target.dtype), alpha=alpha)


def save_reference(ref: nn.Module, path: Path) -> None:
    """Reference weights (rank 0 writes; every rank holds the same replica)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ref.state_dict(), tmp)
    tmp.replace(path)


def load_reference(ref: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint lacks the GRPO reference model weights")
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
