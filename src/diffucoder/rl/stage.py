"""Assemble stage 4 for the shared training runner (:func:`diffucoder.train.run.run`, ``--stage grpo``).

Order matters: the reference model is copied from the policy here, *before* the runner hands the
policy to DeepSpeed (which partitions it in place under ZeRO-3), and the sandbox is checked before
any rollout, so a wrong URL fails the stage in seconds, naming the URL.

Sandbox: ``sandbox.url`` when set; otherwise rank 0 starts a local sandbox server subprocess
(:func:`diffucoder.sandbox.local.local_sandbox`) for the whole stage, shares its loopback URL with
the other ranks of the node, and ``resources`` stops it when the stage ends (multi-node jobs must
set ``sandbox.url``).
"""

from __future__ import annotations

import contextlib

import torch

from diffucoder.config import RunConfig
from diffucoder.rl.data import ProblemSource, load_problems
from diffucoder.rl.reference import make_reference
from diffucoder.rl.rewards import SandboxReward, check_sandbox
from diffucoder.rl.trainer import GRPOStep
from diffucoder.sandbox.client import SandboxClient
from diffucoder.train import distributed


def sandbox_url(cfg: RunConfig, is_main: bool, resources: contextlib.ExitStack) -> str:
    """The configured sandbox URL, or a local server started by rank 0 and stopped with ``resources``."""
    if cfg.sandbox.url:
        return cfg.sandbox.url
    url = None
    if is_main:
        from diffucoder.sandbox.local import local_sandbox

        url = resources.enter_context(local_sandbox(cfg.sandbox))
    return distributed.broadcast_object(url)


def build_grpo_step(
    cfg: RunConfig,
    data_uri: str,
    *,
    model,
    tokenizer,
    dist,
    precision: str,
    resources: contextlib.ExitStack,
) -> GRPOStep:
    """Problems, the sandbox reward, reference copy and the :class:`GRPOStep` plug-in.

    Raises:
        FileNotFoundError / ValueError: the problem file is missing or malformed (naming file and row).
        diffucoder.sandbox.client.SandboxUnavailable: the sandbox does not answer (naming the URL).
    """
    problems = ProblemSource(load_problems(data_uri))
    client = resources.enter_context(SandboxClient(sandbox_url(cfg, dist.is_main, resources), cfg.sandbox))
    check_sandbox(client)
    reference = None
    if cfg.grpo.beta > 0:
        reference = make_reference(model)
        if precision == "bf16":
            reference.to(torch.bfloat16)
    return GRPOStep(
        cfg,
        problems,
        model,
        reference=reference,
        tokenizer=tokenizer,
        reward=SandboxReward(client, cfg.sandbox),
        dist=dist,
    )
