"""Build a :class:`DiffusionLM`: from scratch (Qwen2 dims in ModelConfig) or by converting a base
HF causal LM (paper §B.1-B.2, the DiffuLLaMA recipe: add ``<|mask|>``/``<|dlm_pad|>``, drop the causal mask,
keep the shift).

This is the only path that accepts a plain causal LM; it stamps the HF config with the fields that
declare a diffusion model, which :func:`diffucoder.model.io.load_model` then requires.

New embedding rows (the tokens the base tokenizer lacked, and rows a resize to ``model.vocab_size``
adds) start at the mean of the base tokenizer's rows, in the input embedding and the LM head alike:
a new token begins as an "average" token, so its first logits are the mean logits, not noise. The
rows a checkpoint pads its vocabulary with (Qwen2.5-Coder-7B: 151,665 tokens in 152,064 rows) were
never trained, so the appended tokens get the mean too rather than whatever those rows hold.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from diffucoder.model.checkpoint import check_weights, read_config
from diffucoder.model.config import ModelConfig, SpecialTokensConfig
from diffucoder.model.diffusion_lm import DiffusionLM
from diffucoder.model.kinds import require_convertible_base

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def declare_diffusion_config(config, tokenizer: PreTrainedTokenizerBase) -> None:
    """Write the fields that mark an HF ``config`` as a diffusion LM with this tokenizer's ids."""
    missing = [
        name for name in ("mask_token_id", "pad_token_id", "eos_token_id") if getattr(tokenizer, name) is None
    ]
    if missing:
        raise ValueError(
            f"tokenizer lacks {missing}; add them with diffucoder.data.tokenizer.add_diffusion_tokens"
        )
    config.diffusion_lm = True
    config.diffusion_shift = "ar"  # logits[:, i] predicts token i + 1
    config.mask_token_id = tokenizer.mask_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.use_cache = False


def check_special_tokens(tokenizer: PreTrainedTokenizerBase, tokens: SpecialTokensConfig) -> None:
    """Every role in ``model.tokens.ids`` has that id in ``tokenizer`` (naming the setting when not)."""
    wrong = [
        f"model.tokens.ids.{role}={expected}, but the tokenizer's {role} token "
        f"{getattr(tokenizer, f'{role}_token')!r} has id {getattr(tokenizer, f'{role}_token_id')}"
        for role, expected in sorted(tokens.ids.items())
        if getattr(tokenizer, f"{role}_token_id") != expected
    ]
    if wrong:
        raise ValueError("; ".join(wrong) + " (a different base tokenizer? fix model.tokens or the base)")


def _from_scratch(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    rows = cfg.vocab_size or len(tokenizer)
    if rows < len(tokenizer):
        raise ValueError(f"model.vocab_size={rows} is smaller than the tokenizer's {len(tokenizer)} tokens")
    hf_cfg = Qwen2Config(
        vocab_size=rows,
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


def init_rows_at_mean(hf: PreTrainedModel, rows: list[int], known: int) -> None:
    """Set ``rows`` of the input embedding and the LM head to the mean of their first ``known`` rows."""
    if not rows:
        return
    weights = {id(m.weight): m.weight for m in (hf.get_input_embeddings(), hf.get_output_embeddings())}
    with torch.no_grad():
        for weight in weights.values():
            weight[rows] = weight[:known].float().mean(dim=0).to(weight.dtype)


def _convert_base(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    from diffucoder.data.tokenizer import load_tokenizer
    from diffucoder.model.io import local_dir

    uri = cfg.base_model_uri
    with local_dir(uri, require_manifest=False) as path:
        require_convertible_base(read_config(path, f"model.base_model_uri={uri}"), uri)
        check_weights(path, uri, AutoConfig.from_pretrained(str(path)))
        base_tokens = len(load_tokenizer(str(path)))
        hf = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=DTYPES[cfg.dtype], attn_implementation=cfg.attn_implementation
        )
    rows = hf.get_input_embeddings().weight.shape[0]
    target = cfg.vocab_size or max(rows, len(tokenizer))
    if target < len(tokenizer):
        raise ValueError(
            f"model.vocab_size={target} is smaller than the tokenizer's {len(tokenizer)} tokens "
            f"(base {uri} has {rows} embedding rows)"
        )
    if target != rows:
        hf.resize_token_embeddings(target, mean_resizing=False)
    known = min(base_tokens, rows)
    init_rows_at_mean(hf, sorted(set(range(known, len(tokenizer))) | set(range(rows, target))), known)
    return hf


def build_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> DiffusionLM:
    """A diffusion LM per ``cfg``: converts ``cfg.base_model_uri`` when set, else a fresh Qwen2.

    Args:
        cfg: the ``model`` config section.
        tokenizer: must carry mask, pad and eos tokens (``train_tokenizer``, or a base tokenizer
            after ``add_diffusion_tokens``); its ids must match ``cfg.tokens.ids``.

    Raises:
        FileNotFoundError / ValueError / CheckpointError: naming the base URI, the setting or the
            missing tokenizer fields.
    """
    check_special_tokens(tokenizer, cfg.tokens)
    hf = _convert_base(cfg, tokenizer) if cfg.base_model_uri else _from_scratch(cfg, tokenizer)
    declare_diffusion_config(hf.config, tokenizer)
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
