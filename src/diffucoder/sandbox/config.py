"""Typed config for the `sandbox` section. Owned by the sandbox package; composed in diffucoder.config."""

from __future__ import annotations

from diffucoder.config_base import StrictModel


class SandboxConfig(StrictModel):
    """Sandbox reward service: server, isolation limits and client behaviour."""
