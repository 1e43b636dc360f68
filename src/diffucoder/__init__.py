"""DiffuCoder: masked-diffusion code LLM training platform."""

__version__ = "0.1.0"
