"""Build a :class:`DiffusionLM`: from scratch (Qwen2 dims in ModelConfig) or by converting a base
HF causal LM (paper §B.1-B.2, the DiffuLLaMA recipe: add ``<|mask|>``/``<|dlm_pad|>``, drop the causal mask,
keep the shift).

This is the only path that accepts a plain causal LM; it stamps the HF config with the fields that
declare a diffusion model, which :func:`diffucoder.model.io.load_model` then requires.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from diffucoder.model.config import ModelConfig
from diffucoder.model.diffusion_lm import DiffusionLM

SUPPORTED_MODEL_TYPES = ("qwen2",)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def declare_diffusion(hf: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Write the fields that mark ``hf.config`` as a diffusion LM with this tokenizer's ids."""
    missing = [
        name for name in ("mask_token_id", "pad_token_id", "eos_token_id") if getattr(tokenizer, name) is None
    ]
    if missing:
        raise ValueError(
            f"tokenizer lacks {missing}; load it with diffucoder.data.tokenizer.load_tokenizer (adds mask/pad)"
        )
    cfg = hf.config
    cfg.diffusion_lm = True
    cfg.diffusion_shift = "ar"  # logits[:, i] predicts token i + 1
    cfg.mask_token_id = tokenizer.mask_token_id
    cfg.pad_token_id = tokenizer.pad_token_id
    cfg.eos_token_id = tokenizer.eos_token_id
    cfg.use_cache = False


def _from_scratch(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    hf_cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_word_embeddings,
        initializer_range=cfg.initializer_range,
        attn_implementation=cfg.attn_implementation,
        bos_token_id=None,
    )
    # Weight init draws from torch's global RNG, which the stage entry seeds from cfg.seed.
    return Qwen2ForCausalLM(hf_cfg).to(DTYPES[cfg.dtype])


def _convert_base(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    from diffucoder.model.io import local_dir

    uri = cfg.base_model_uri
    with local_dir(uri, require_manifest=False) as path:
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model.base_model_uri={uri!r}: no config.json (not an HF model dir)")
        hf = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=DTYPES[cfg.dtype], attn_implementation=cfg.attn_implementation
        )
    if hf.config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model.base_model_uri={uri!r} is a {hf.config.model_type!r} model; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if len(tokenizer) > hf.get_input_embeddings().weight.shape[0]:
        # new rows start at the mean embedding, so the added tokens begin as "average" tokens
        hf.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return hf


def build_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> DiffusionLM:
    """A diffusion LM per ``cfg``: converts ``cfg.base_model_uri`` when set, else a fresh Qwen2.

    Args:
        cfg: the ``model`` config section.
        tokenizer: must carry mask, pad and eos tokens (``load_tokenizer`` / ``train_tokenizer``).

    Raises:
        FileNotFoundError / ValueError: naming the base URI or the missing tokenizer fields.
    """
    hf = _convert_base(cfg, tokenizer) if cfg.base_model_uri else _from_scratch(cfg, tokenizer)
    declare_diffusion(hf, tokenizer)
    model = DiffusionLM(hf)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model


def enable_gradient_checkpointing(model: DiffusionLM) -> None:
    """Recompute each decoder layer in backward (non-reentrant: works with DeepSpeed and frozen inputs)."""
    kwargs = {"use_reentrant": False}
    hf = model.hf
    # transformers 5.x renamed the method; pyproject still admits 4.x, which only has the old name
    if hasattr(hf, "activation_checkpointing_enable"):
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
