"""Diffusion decoding: Dream's sampler, Fast-dLLM options, decode traces, AR-ness and post-processing."""

from diffucoder.decoding.config import DecodingConfig, FastDecodingConfig
from diffucoder.decoding.sampler import GenerationOutput, diffusion_generate
from diffucoder.decoding.schedule import unmask_schedule

__all__ = [
    "DecodingConfig",
    "FastDecodingConfig",
    "GenerationOutput",
    "diffusion_generate",
    "unmask_schedule",
]
