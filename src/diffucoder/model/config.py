"""Typed config for the `model` section. Owned by the model package; composed in diffucoder.config.

Two ways to get a model (see :func:`diffucoder.model.build_model`):
- ``base_model_uri`` set: convert an HF causal-LM checkpoint (a dir or ``s3://``) into a diffusion
  LM, as DiffuCoder did with Qwen2.5-Coder-7B (paper §B.1).
- ``base_model_uri`` unset: a from-scratch Qwen2 with the dimensions below. The defaults are the
  Qwen2.5-7B / Dream-7B dimensions the paper uses; the tiny preset shrinks them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffucoder.config_base import StrictModel


class ModelConfig(StrictModel):
    """The masked-diffusion model: architecture for from-scratch builds, or a base checkpoint URI."""

    # --- source ---
    base_model_uri: str | None = Field(
        None, description="HF causal-LM dir or s3:// URI to convert; None builds a from-scratch Qwen2"
    )

    # --- from-scratch Qwen2 dimensions (ignored when base_model_uri is set) ---
    hidden_size: int = Field(3584, ge=8)
    num_hidden_layers: int = Field(28, ge=1)
    num_attention_heads: int = Field(28, ge=1)
    num_key_value_heads: int = Field(4, ge=1, description="grouped-query attention KV heads")
    intermediate_size: int = Field(18944, ge=8, description="SwiGLU FFN width")
    max_position_embeddings: int = Field(32768, ge=16)
    rope_theta: float = Field(1_000_000.0, gt=0)
    rms_norm_eps: float = Field(1e-6, gt=0)
    tie_word_embeddings: bool = Field(False, description="Qwen2.5-7B keeps input/output embeddings apart")
    initializer_range: float = Field(0.02, gt=0)

    # --- runtime ---
    attn_implementation: Literal["sdpa", "sdpa_fp32", "eager"] = Field(
        "sdpa",
        description="attention kernel; all take the arbitrary 4-D masks that stage-1 annealing needs "
        "(FlashAttention-2 cannot, HKUNLP/DiffuLLaMA#16). sdpa_fp32 = SDPA in float32 inside a bf16-mixed "
        "autocast, faster on CPU (diffucoder.model.attention)",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "bfloat16", description="parameter dtype the model is built/loaded in"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward to save memory"
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        problems = []
        if self.hidden_size % self.num_attention_heads:
            problems.append(
                f"model.hidden_size={self.hidden_size} must be divisible by "
                f"model.num_attention_heads={self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"model.num_attention_heads={self.num_attention_heads} must be divisible by "
                f"model.num_key_value_heads={self.num_key_value_heads}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self
