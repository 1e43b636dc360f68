"""Typed config for the `decoding` section. Owned by the decoding package; composed in diffucoder.config.

Defaults are DiffuCoder's README/demo settings for Dream's ``diffusion_generate`` (apple/ml-diffucoder):
256 new tokens in 256 steps, entropy confidence, ``alg_temp`` 0, top-p 0.95, temperature 0.2 (the
paper's evaluation temperature before RL). RL rollouts and evaluation override what they need.

``fast`` holds the Fast-dLLM accelerations (arXiv 2505.22618), off by default because the paper's
numbers use the plain sampler.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffucoder.config_base import StrictModel

Alg = Literal["origin", "maskgit_plus", "topk_margin", "entropy"]
KVCache = Literal["none", "prefix", "dual"]


class FastSettings(StrictModel):
    """Fast-dLLM style decoding (arXiv 2505.22618): confidence-threshold commits and a block KV cache.

    Evaluation may decode with its own (``evaluation.fast``) while GRPO rollouts keep ``decoding.fast``.
    """

    threshold: float | None = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="commit every masked position of the current block whose token has probability >= this "
        "(tau) under the model (raw softmax, before temperature and top-p), and always at least one; "
        "None = only the step schedule decides how many commit",
    )
    block_length: int | None = Field(
        32,
        ge=1,
        description="decode the completion in left-to-right blocks of this many tokens (semi-AR); "
        "None = one block spanning the whole completion",
    )
    kv_cache: KVCache = Field(
        "dual",
        description="approximate KV cache refreshed once per block: prefix = reuse K/V left of the block, "
        "dual = also reuse K/V right of the block; none = full forward every step",
    )


class FastDecodingConfig(FastSettings):
    """The decoding section's fast settings and whether they are on."""

    enabled: bool = Field(False, description="use the settings above; False = the plain Dream sampler")


class DecodingConfig(StrictModel):
    """Diffusion sampler settings (Dream diffusion_generate semantics) and fast decoding."""

    # --- length and schedule ---
    max_new_tokens: int = Field(256, ge=1, description="completion length L; every position is filled")
    steps: int = Field(256, ge=1, description="denoising steps (one model forward each); steps = L is '1x'")
    eps: float = Field(1e-3, gt=0.0, lt=1.0, description="final time of the grid linspace(1, eps, steps + 1)")

    # --- token sampling ---
    temperature: float = Field(0.2, ge=0.0, description="0 = greedy (argmax); > 0 samples from logits / T")
    top_p: float | None = Field(0.95, gt=0.0, le=1.0, description="nucleus truncation; None or 1 = off")
    top_k: int | None = Field(None, ge=1, description="keep the k most likely tokens; None = off")

    # --- which positions to unmask ---
    alg: Alg = Field(
        "entropy",
        description="origin: each masked position unmasks at random with prob 1 - s/t; maskgit_plus / "
        "topk_margin / entropy: unmask the most confident positions (top-1 prob / top1 - top2 / negative "
        "entropy)",
    )
    alg_temp: float | None = Field(
        None,
        ge=0.0,
        description="0 or None = take the top-k confidences; > 0 = sample positions from softmax(conf / alg_temp)",
    )

    fast: FastDecodingConfig = FastDecodingConfig()

    @model_validator(mode="after")
    def _consistent(self) -> DecodingConfig:
        problems = []
        fast = self.fast
        if fast.enabled:
            if fast.threshold is not None and self.alg == "origin":
                problems.append(
                    "decoding.fast.threshold needs a confidence ranking, but decoding.alg='origin' has none; "
                    "use alg=maskgit_plus/topk_margin/entropy or fast.threshold=null"
                )
            block = fast.block_length or self.max_new_tokens
            if self.max_new_tokens % block:
                problems.append(
                    f"decoding.fast.block_length={block} must divide decoding.max_new_tokens={self.max_new_tokens}"
                )
            else:
                blocks = self.max_new_tokens // block
                if self.steps % blocks:
                    problems.append(
                        f"decoding.steps={self.steps} must be a multiple of the number of blocks "
                        f"({blocks} = max_new_tokens {self.max_new_tokens} / block_length {block}), "
                        "so every block gets the same step budget"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def block_length(self) -> int:
        """Tokens per block: ``fast.block_length`` when fast decoding is on, else the whole completion."""
        if self.fast.enabled and self.fast.block_length is not None:
            return self.fast.block_length
        return self.max_new_tokens

    @property
    def threshold(self) -> float | None:
        """The commit threshold tau in effect (None when fast decoding is off)."""
        return self.fast.threshold if self.fast.enabled else None

    @property
    def kv_cache(self) -> KVCache:
        """The KV cache mode in effect ("none" when fast decoding is off)."""
        return self.fast.kv_cache if self.fast.enabled else "none"
