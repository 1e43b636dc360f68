"""The Dream checkpoint format (DreamLM/Dream; apple/DiffuCoder-7B-* reuse it) and its mapping to ours.

A Dream model is a Qwen2 decoder run bidirectionally with the AR shift kept: ``DreamModel`` holds
``model.*`` (embeddings, decoder layers with Q/K/V bias, RMSNorm) and ``lm_head`` under the same
tensor names and shapes as transformers' ``Qwen2ForCausalLM``. Importing therefore rewrites only
``config.json`` (``model_type: Dream`` becomes ``qwen2`` plus the fields that declare a diffusion
model) and copies the safetensors byte for byte; exporting does the reverse. Dream's own Python
(``configuration_dream.py``, ``modeling_dream.py``, ``generation_utils.py``, loaded through
``auto_map`` with ``trust_remote_code``) is never run here.

The field lists follow the released ``config.json`` and ``generation_config.json`` of
apple/DiffuCoder-7B-Base/-Instruct and Dream-org/Dream-v0-*-7B on the Hugging Face hub.
"""

from __future__ import annotations

from typing import Any

from diffucoder.model.checkpoint import CheckpointError

DREAM_MODEL_TYPES = ("dream",)  # compared lower-cased; the released configs say "Dream"
DREAM_ARCHITECTURE = "DreamModel"
DREAM_AUTO_MAP = {
    "AutoConfig": "configuration_dream.DreamConfig",
    "AutoModel": "modeling_dream.DreamModel",
}
DREAM_CODE_FILES = ("configuration_dream.py", "modeling_dream.py", "generation_utils.py")

# Qwen2 architecture fields a Dream config carries under the same names.
ARCH_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "tie_word_embeddings",
    "rope_theta",
    "rope_scaling",
    "attention_dropout",
    "max_window_layers",
)
# Dream's diffusion_generate settings in generation_config.json: a model's decoding defaults, kept
# in our config.json under GENERATION_DEFAULTS_KEY (they have the names of DecodingConfig's fields).
GENERATION_FIELDS = ("steps", "alg", "alg_temp", "eps", "temperature", "top_p", "top_k")
GENERATION_DEFAULTS_KEY = "diffusion_generation"


def is_dream(config: dict) -> bool:
    return str(config.get("model_type", "")).lower() in DREAM_MODEL_TYPES


def qwen2_fields(dream: dict, source: str) -> dict[str, Any]:
    """``Qwen2Config`` keyword arguments for the architecture a Dream ``config.json`` describes.

    Raises:
        CheckpointError: a Dream option the Qwen2 decoder does not have (sliding window, M-RoPE).
    """
    unsupported = [k for k in ("use_sliding_window", "use_mrope") if dream.get(k)]
    if unsupported:
        raise CheckpointError(
            f"{source}/config.json sets {', '.join(unsupported)}: not supported (the released "
            "DiffuCoder and Dream configs set them false)"
        )
    missing = [
        k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads") if k not in dream
    ]
    if missing:
        raise CheckpointError(f"{source}/config.json lacks {', '.join(missing)}")
    fields = {k: dream[k] for k in ARCH_FIELDS if k in dream}
    dtype = dream.get("torch_dtype") or dream.get("dtype")
    if dtype:
        fields["dtype"] = dtype
    for name in ("bos_token_id", "eos_token_id"):
        if dream.get(name) is not None:
            fields[name] = dream[name]
    return fields


def generation_defaults(generation_config: dict) -> dict[str, Any]:
    """The decoding defaults a Dream ``generation_config.json`` declares (absent keys left out)."""
    return {k: generation_config[k] for k in GENERATION_FIELDS if k in generation_config}


def _rope(hf_config) -> tuple[float, dict | None]:
    """(rope_theta, rope_scaling) of a transformers 5.x (``rope_parameters``) or 4.x config."""
    params = getattr(hf_config, "rope_parameters", None)
    if params:
        params = dict(params)
        theta = params.pop("rope_theta")
        return float(theta), None if params.get("rope_type", "default") == "default" else params
    return float(hf_config.rope_theta), getattr(hf_config, "rope_scaling", None)


def dream_config(hf_config, dtype: str, transformers_version: str) -> dict[str, Any]:
    """The ``config.json`` of a Dream-format export of a project model: the released field set."""
    theta, scaling = _rope(hf_config)
    eos = hf_config.eos_token_id
    eos = eos[0] if isinstance(eos, list | tuple) else eos
    return {
        "architectures": [DREAM_ARCHITECTURE],
        "attention_dropout": float(getattr(hf_config, "attention_dropout", 0.0)),
        "auto_map": dict(DREAM_AUTO_MAP),
        "bos_token_id": hf_config.bos_token_id if hf_config.bos_token_id is not None else eos,
        "eos_token_id": eos,
        "hidden_act": hf_config.hidden_act,
        "hidden_size": hf_config.hidden_size,
        "initializer_range": hf_config.initializer_range,
        "intermediate_size": hf_config.intermediate_size,
        "mask_token_id": hf_config.mask_token_id,
        "max_position_embeddings": hf_config.max_position_embeddings,
        "max_window_layers": getattr(hf_config, "max_window_layers", hf_config.num_hidden_layers),
        "model_type": "Dream",
        "num_attention_heads": hf_config.num_attention_heads,
        "num_hidden_layers": hf_config.num_hidden_layers,
        "num_key_value_heads": hf_config.num_key_value_heads,
        "pad_token_id": hf_config.pad_token_id,
        "rms_norm_eps": hf_config.rms_norm_eps,
        "rope_scaling": scaling,
        "rope_theta": theta,
        "sliding_window": None,
        "tie_word_embeddings": bool(hf_config.tie_word_embeddings),
        "torch_dtype": dtype,
        "transformers_version": transformers_version,
        "use_cache": False,
        "use_mrope": False,
        "use_sliding_window": False,
        "vocab_size": hf_config.vocab_size,
    }


def dream_generation_config(defaults: dict[str, Any], hf_config, transformers_version: str) -> dict[str, Any]:
    """A Dream ``generation_config.json``: the model's decoding defaults and its token ids."""
    eos = hf_config.eos_token_id
    eos = eos[0] if isinstance(eos, list | tuple) else eos
    return {
        **defaults,
        "bos_token_id": hf_config.bos_token_id if hf_config.bos_token_id is not None else eos,
        "eos_token_id": eos,
        "mask_token_id": hf_config.mask_token_id,
        "pad_token_id": hf_config.pad_token_id,
        "output_history": False,
        "transformers_version": transformers_version,
    }
