"""Tiny checkpoints in the released formats, written by tests (random weights, nothing downloaded).

The released configuration files are public on the Hugging Face hub; their values are copied here
as data so that the fixtures have the released structure at tiny dimensions, and so that tests can
pin what the platform writes and expects against them:

- ``DIFFUCODER_7B_INSTRUCT_CONFIG``: ``config.json`` of apple/DiffuCoder-7B-Instruct (the Base
  model's has the same fields and values).
- ``DREAM_GENERATION_CONFIG``: ``generation_config.json`` of Dream-org/Dream-v0-Instruct-7B, whose
  Dream sampler code DiffuCoder reuses.
- ``DIFFUCODER_TOKEN_IDS``: the special tokens of DiffuCoder-7B-Instruct's tokenizer: Qwen2.5's
  ``<|endoftext|>``/``<|im_start|>``/``<|im_end|>``, Dream's ``<|beginoftext|>`` and ``<|mask|>``,
  and the ``<|dlm_pad|>`` DiffuCoder added for instruction tuning (its ``added_tokens.json`` is one
  entry longer than the Base model's).
- ``QWEN25_CODER_7B_CONFIG``: ``config.json`` of Qwen/Qwen2.5-Coder-7B.

A Dream checkpoint is written the way the released ones are laid out: ``model-0000N-of-0000M``
safetensors shards with ``model.safetensors.index.json`` (or one ``model.safetensors``), Dream's
``config.json`` with ``auto_map``, ``generation_config.json``, and the tokenizer either as
``tokenizer.json`` or in the slow form the released repos ship (``vocab.json`` + ``merges.txt``,
``tokenizer_config.json`` naming ``DreamTokenizer`` through ``auto_map``, ``added_tokens.json``,
``chat_template.jinja``). The weights come from a transformers ``Qwen2ForCausalLM``: Dream's tensor
names are Qwen2's, which is what lets tests compare against that model directly.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Config, Qwen2ForCausalLM

DIFFUCODER_7B_INSTRUCT_CONFIG = {
    "architectures": ["DreamModel"],
    "attention_dropout": 0.0,
    "auto_map": {
        "AutoConfig": "configuration_dream.DreamConfig",
        "AutoModel": "modeling_dream.DreamModel",
    },
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "mask_token_id": 151666,
    "max_position_embeddings": 131072,
    "max_window_layers": 28,
    "model_type": "Dream",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "pad_token_id": 151643,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.3",
    "use_cache": False,
    "use_mrope": False,
    "use_sliding_window": False,
    "vocab_size": 152064,
}
DREAM_GENERATION_CONFIG = {
    "_from_model_config": True,
    "alg": "origin",
    "alg_temp": None,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "eps": 0.001,
    "mask_token_id": None,
    "output_history": False,
    "pad_token_id": 151643,
    "steps": 512,
    "temperature": 0.0,
    "top_k": None,
    "top_p": None,
    "transformers_version": "4.46.2",
}
DIFFUCODER_TOKEN_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|beginoftext|>": 151665,
    "<|mask|>": 151666,
    "<|dlm_pad|>": 151667,
}
QWEN25_CODER_7B_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen2",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.44.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
}

# Qwen2.5's pre-tokenizer (its tokenizer.json and transformers' Qwen2 tokenizer use this pattern).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
)
DREAM_SPECIALS = ("<|beginoftext|>", "<|mask|>")
INSTRUCT_SPECIALS = ("<|dlm_pad|>",)
# Qwen's chat template without its default system turn (a tiny model has no use for one).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_DIMS = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}


def corpus() -> list[str]:
    """Real code to train the tiny BPE on: two stdlib modules (fixed per Python version)."""
    return [inspect.getsource(textwrap), inspect.getsource(json.encoder)]


def qwen_like_tokenizer(specials: tuple[str, ...], vocab_size: int = 480) -> Tokenizer:
    """A byte-level BPE with Qwen's normaliser and pre-tokenizer; ``specials`` appended after the vocab."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _added_tokens_decoder(tok: Tokenizer, specials: tuple[str, ...]) -> dict:
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    return {str(tok.token_to_id(s)): {"content": s, **flags} for s in specials}


def _write_tokenizer(
    out: Path, tok: Tokenizer, specials: tuple[str, ...], roles: dict, form: str, dream: bool
):
    """The tokenizer files; ``form`` = "fast" (tokenizer.json) or "slow" (vocab.json + merges.txt)."""
    if form == "fast":
        tok.save(str(out / "tokenizer.json"))
    else:
        tok.model.save(str(out))
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": _added_tokens_decoder(tok, specials),
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 131072,
        "split_special_tokens": False,
        "tokenizer_class": "DreamTokenizer" if dream else "Qwen2Tokenizer",
        "unk_token": None,
        **roles,
    }
    if dream:
        config["auto_map"] = {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "added_tokens.json").write_text(json.dumps({s: tok.token_to_id(s) for s in specials}, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(roles, indent=2))
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)


def _write_weights(out: Path, model: Qwen2ForCausalLM, sharded: bool) -> None:
    model.save_pretrained(out, max_shard_size="40KB" if sharded else "1GB")
    (out / "generation_config.json").unlink(missing_ok=True)


@dataclass
class TinyCheckpoint:
    """A checkpoint written to ``path`` and the in-memory model whose weights it holds."""

    path: Path
    model: Qwen2ForCausalLM
    token_ids: dict[str, int]


def _tiny_model(vocab_rows: int, dtype: torch.dtype, seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab_rows, rope_theta=1e6, tie_word_embeddings=False, **TINY_DIMS)
    return Qwen2ForCausalLM(cfg).to(dtype).eval()


def write_dream_checkpoint(
    out: Path,
    *,
    instruct: bool = True,
    tokenizer_form: str = "slow",
    sharded: bool = True,
    dtype: torch.dtype = torch.float32,
    extra_rows: int = 10,
    seed: int = 0,
) -> TinyCheckpoint:
    """A DiffuCoder-7B-Instruct-format checkpoint (``instruct=False``: Dream/DiffuCoder-Base, pad = eos).

    ``extra_rows`` pads the embedding beyond the tokenizer as the released 152,064 rows do.
    """
    out.mkdir(parents=True, exist_ok=True)
    specials = QWEN_SPECIALS + DREAM_SPECIALS + (INSTRUCT_SPECIALS if instruct else ())
    tok = qwen_like_tokenizer(specials)
    ids = {s: tok.token_to_id(s) for s in specials}
    model = _tiny_model(tok.get_vocab_size() + extra_rows, dtype, seed)
    _write_weights(out, model, sharded)
    pad = "<|dlm_pad|>" if instruct else "<|endoftext|>"
    roles = {
        "bos_token": "<|beginoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": pad,
        "mask_token": "<|mask|>",
    }
    _write_tokenizer(out, tok, specials, roles, tokenizer_form, dream=True)
    config = {
        **DIFFUCODER_7B_INSTRUCT_CONFIG,
        **TINY_DIMS,
        "vocab_size": model.config.vocab_size,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "mask_token_id": ids["<|mask|>"],
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    generation = {
        **DREAM_GENERATION_CONFIG,
        **{k: ids["<|endoftext|>"] for k in ("bos_token_id", "eos_token_id", "pad_token_id")},
    }
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return TinyCheckpoint(out, model, ids)


def write_qwen2_checkpoint(
    out: Path,
    *,
    extra_rows: int = 10,
    sharded: bool = True,
    dtype: torch.dtype = torch.float32,
    seed: int = 1,
) -> TinyCheckpoint:
    """A Qwen2.5-Coder-format causal LM: no mask or pad token; ``extra_rows`` of vocabulary padding."""
    out.mkdir(parents=True, exist_ok=True)
    tok = qwen_like_tokenizer(QWEN_SPECIALS)
    ids = {s: tok.token_to_id(s) for s in QWEN_SPECIALS}
    model = _tiny_model(tok.get_vocab_size() + extra_rows, dtype, seed)
    _write_weights(out, model, sharded)
    roles = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    _write_tokenizer(out, tok, QWEN_SPECIALS, roles, "fast", dream=False)
    config = {
        **QWEN25_CODER_7B_CONFIG,
        **TINY_DIMS,
        "vocab_size": model.config.vocab_size,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|endoftext|>"],
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return TinyCheckpoint(out, model, ids)
