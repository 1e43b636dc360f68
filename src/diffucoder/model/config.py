"""Typed config for the `model` section. Owned by the model package; composed in diffucoder.config.

Two ways to get a model (see :func:`diffucoder.model.build_model`):
- ``base_model_uri`` set: convert an HF causal-LM checkpoint (a dir or ``s3://``) into a diffusion
  LM, as DiffuCoder did with Qwen2.5-Coder-7B (paper §B.1): the ``tokens`` its tokenizer lacks are
  appended and the embeddings sized to ``vocab_size``.
- ``base_model_uri`` unset: a from-scratch Qwen2 with the dimensions below. The defaults are the
  Qwen2.5-7B / Dream-7B dimensions the paper uses; the tiny preset shrinks them.

A released diffusion checkpoint (DiffuCoder, Dream) is not converted: ``diffucoder model import``
makes it a project model, which any stage can start from (docs/model.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffucoder.config_base import StrictModel

TokenRole = Literal["bos", "eos", "mask", "pad"]


class SpecialTokensConfig(StrictModel):
    """The diffusion model's special tokens (a from-scratch tokenizer has them built in).

    Converting a base causal LM appends the ones its tokenizer lacks in the order bos, mask, pad.
    """

    bos: str | None = Field(
        None,
        description="beginning-of-text token to declare (never prepended); paper-7b: <|beginoftext|>, "
        "appended first so that mask and pad get DiffuCoder's ids",
    )
    mask: str = Field("<|mask|>", description="the absorbing-state token that noised positions hold")
    pad: str = Field("<|dlm_pad|>", description="the trained pad of fixed-length SFT (paper §B.1)")
    ids: dict[TokenRole, int] = Field(
        {},
        description="ids the tokenizer must give these roles (eos included), checked when the model is "
        "built: a different base tokenizer then fails before training instead of shifting every id",
    )


class ModelConfig(StrictModel):
    """The masked-diffusion model: architecture for from-scratch builds, or a base checkpoint URI."""

    # --- source ---
    base_model_uri: str | None = Field(
        None, description="HF causal-LM dir or s3:// URI to convert; None builds a from-scratch Qwen2"
    )

    # --- special tokens and vocabulary ---
    tokens: SpecialTokensConfig = SpecialTokensConfig()
    vocab_size: int | None = Field(
        None,
        ge=1,
        description="embedding rows; None = len(tokenizer) from scratch, the base checkpoint's rows when "
        "converting (Qwen2.5-Coder-7B pads to 152064); never fewer than the tokenizer's tokens",
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
