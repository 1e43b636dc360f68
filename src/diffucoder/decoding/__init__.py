"""Diffusion decoding: Dream's sampler, Fast-dLLM options, decode traces, AR-ness and post-processing.

Public names resolve lazily (see ``diffucoder.lazy``) so that importing ``diffucoder.config``
does not pull in torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffucoder.decoding.config import DecodingConfig, FastDecodingConfig, FastSettings
from diffucoder.lazy import lazy_exports

_EXPORTS = {
    "GenerationOutput": "diffucoder.decoding.sampler",
    "diffusion_generate": "diffucoder.decoding.sampler",
    "unmask_schedule": "diffucoder.decoding.schedule",
}
__all__ = [
    "DecodingConfig",
    "FastDecodingConfig",
    "FastSettings",
    "GenerationOutput",
    "diffusion_generate",
    "unmask_schedule",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from diffucoder.decoding.sampler import GenerationOutput, diffusion_generate
    from diffucoder.decoding.schedule import unmask_schedule
