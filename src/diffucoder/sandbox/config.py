"""Typed config for the `sandbox` section. Owned by the sandbox package; composed in diffucoder.config.

Defaults follow the paper's reward path (§B.1: 5 s per test, reward = 2.0 x code + 0.5 x format) and
limits that fit test programs (1 GiB address space, 64 KiB of output; docs/sandbox.md).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from diffucoder.config_base import StrictModel


class SandboxConfig(StrictModel):
    """Sandbox reward service: server, isolation limits and client behaviour."""

    # where trainers and evaluators send jobs; None = start a local server (`local_sandbox()`)
    url: str | None = Field(
        None, description="base URL of a running sandbox server; None = start one locally"
    )

    # server
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(2, ge=1, description="warm executor slots; each runs one job at a time")
    queue_size: int = Field(256, ge=1, description="jobs waiting beyond the busy slots before 429")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 429")
    shutdown_grace_s: float = Field(30.0, ge=0, description="time in-flight jobs get to finish on SIGTERM")
    sandbox_uid_base: int = Field(
        61000, ge=1000, description="slot i runs code as uid base+i (only used when the server runs as root)"
    )
    bubblewrap: bool = Field(
        True, description="wrap each slot in bubblewrap namespaces when bwrap works here"
    )

    # per-job limits (defaults for jobs that do not set their own)
    time_limit_s: float = Field(5.0, gt=0, description="per test case (paper: 5 s per assert)")
    total_time_limit_s: float = Field(
        30.0, gt=0, description="wall-clock cap for one job, all tests together"
    )
    memory_mb: int = Field(1024, ge=64, description="address-space limit of the child")
    max_output_bytes: int = Field(65536, ge=1024, description="stdout and stderr kept per job, each")
    max_processes: int = Field(32, ge=4, description="processes (and threads) one job may hold")
    max_file_mb: int = Field(16, ge=1, description="largest file the code may write")
    max_open_files: int = Field(64, ge=16)
    tier_cache_mb: int = Field(
        2048, ge=1, description="registered io tiers (inputs + expected outputs) the server keeps, as JSON"
    )
    slot_inputs_cache_mb: int = Field(
        64,
        ge=0,
        description="io inputs each slot keeps for the next jobs, as JSON (the children inherit them: "
        "their address space counts against memory_mb)",
    )

    # client
    request_timeout_s: float = Field(120.0, gt=0, description="deadline of one HTTP batch request")
    max_attempts: int = Field(4, ge=1, description="tries on 429/5xx/connection errors")
    batch_size: int = Field(64, ge=1, description="jobs per /v1/run_batch request")
    max_concurrent_requests: int = Field(4, ge=1)

    # rewards (paper: reward_weights [2.0, 0.5] for [code, code_format])
    code_reward_weight: float = 2.0
    format_reward_weight: float = 0.5


def load_sandbox_config(config: str | None = None, overrides: list[str] | None = None) -> SandboxConfig:
    """The ``sandbox:`` section of a preset name or YAML file, plus ``key=value`` overrides.

    Why not ``diffucoder.config.load_config``: composing the whole RunConfig imports every package's
    config (torch among them), and the sandbox image deliberately ships without torch.
    """
    data: dict = {}
    if config is not None:
        if Path(config).is_file():
            text, source = Path(config).read_text(), config
        else:
            try:
                text = resources.files("diffucoder.presets").joinpath(f"{config}.yaml").read_text()
            except FileNotFoundError:
                raise ValueError(f"config {config!r} is neither a preset nor a file") from None
            source = f"preset {config!r}"
        try:
            data = dict((yaml.safe_load(text) or {}).get("sandbox") or {})
        except (yaml.YAMLError, AttributeError) as exc:
            raise ValueError(f"{source}: cannot read its sandbox section: {exc}") from None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not of the form key=value")
        data[key.strip().removeprefix("sandbox.")] = yaml.safe_load(raw) if raw else ""
    try:
        return SandboxConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"sandbox.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid sandbox config: {problems}") from None
