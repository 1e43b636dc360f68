"""The paper-7b preset against the released DiffuCoder-7B configuration, and base-model conversion.

Converting Qwen2.5-Coder-7B must give the model the released checkpoints describe: the same
dimensions, vocabulary rows and special-token ids. The conversion itself runs here on a tiny
Qwen2.5-Coder-format checkpoint (tests/tiny_checkpoints.py).
"""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoints import (
    DIFFUCODER_7B_INSTRUCT_CONFIG,
    DIFFUCODER_TOKEN_IDS,
    QWEN25_CODER_7B_CONFIG,
    write_dream_checkpoint,
    write_qwen2_checkpoint,
)
from tokenizers import AddedToken, Tokenizer, models
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from diffucoder.config import load_config
from diffucoder.data.tokenizer import add_diffusion_tokens, load_tokenizer
from diffucoder.model import annealed_attention_mask, build_model
from diffucoder.model.build import check_special_tokens
from diffucoder.model.config import ModelConfig, SpecialTokensConfig
from diffucoder.model.importer import import_checkpoint

# Qwen2.5's 22 added tokens, ids 151643-151664 after its 151,643 BPE tokens.
QWEN25_ADDED = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)


def test_paper_7b_model_settings_match_the_released_diffucoder_config():
    model = load_config("paper-7b").model
    released = DIFFUCODER_7B_INSTRUCT_CONFIG
    for field in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
        "rope_theta",
        "rms_norm_eps",
        "tie_word_embeddings",
        "initializer_range",
        "vocab_size",
    ):
        assert getattr(model, field) == released[field], field
    assert model.tokens.mask == "<|mask|>" and model.tokens.pad == "<|dlm_pad|>"
    assert model.tokens.bos == "<|beginoftext|>"
    assert model.tokens.ids == {
        "eos": released["eos_token_id"],
        "mask": released["mask_token_id"],
        "bos": DIFFUCODER_TOKEN_IDS["<|beginoftext|>"],
        "pad": DIFFUCODER_TOKEN_IDS["<|dlm_pad|>"],
    }
    # the base it converts already has the released vocabulary rows and RoPE base
    assert (QWEN25_CODER_7B_CONFIG["vocab_size"], QWEN25_CODER_7B_CONFIG["rope_theta"]) == (
        model.vocab_size,
        model.rope_theta,
    )


def test_converting_a_qwen25_sized_tokenizer_gives_the_released_ids():
    """151,643 BPE tokens + Qwen2.5's 22 added tokens, then the paper-7b conversion: DiffuCoder's ids."""
    vocab = {f"t{i}": i for i in range(151_643)}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN25_ADDED])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    assert len(tokenizer) == 151_665
    tokens = load_config("paper-7b").model.tokens
    added = add_diffusion_tokens(tokenizer, mask=tokens.mask, pad=tokens.pad, bos=tokens.bos)
    assert {tokenizer.convert_ids_to_tokens(i): i for i in added} == {
        t: DIFFUCODER_TOKEN_IDS[t] for t in ("<|beginoftext|>", "<|mask|>", "<|dlm_pad|>")
    }
    assert all(tokenizer.convert_tokens_to_ids(t) == i for t, i in DIFFUCODER_TOKEN_IDS.items())
    check_special_tokens(tokenizer, tokens)  # what build_model checks before it builds anything


@pytest.fixture
def qwen_base(tmp_path):
    """A tiny Qwen2.5-Coder-format base, imported as a pipeline run would read it."""
    ck = write_qwen2_checkpoint(tmp_path / "src")
    import_checkpoint(str(ck.path), str(tmp_path / "base"))
    return ck, str(tmp_path / "base")


def _convert(base: str, **model_fields):
    tokens = SpecialTokensConfig(bos="<|beginoftext|>")
    cfg = ModelConfig(base_model_uri=base, dtype="float32", tokens=tokens).model_copy(update=model_fields)
    tokenizer = load_tokenizer(base)
    added = add_diffusion_tokens(tokenizer, mask=cfg.tokens.mask, pad=cfg.tokens.pad, bos=cfg.tokens.bos)
    return build_model(cfg, tokenizer).eval(), tokenizer, added


def test_conversion_appends_tokens_inside_the_padded_vocabulary_at_the_mean(qwen_base):
    ck, base = qwen_base
    source = ck.model.state_dict()
    rows = source["model.embed_tokens.weight"].shape[0]
    model, tokenizer, added = _convert(base)
    n_base = added[0]
    assert tokenizer.convert_ids_to_tokens(added) == ["<|beginoftext|>", "<|mask|>", "<|dlm_pad|>"]
    assert (model.mask_token_id, model.pad_token_id) == (added[1], added[2])
    assert model.hf.get_input_embeddings().weight.shape[0] == rows  # the padding rows hold them
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        weight, original = model.hf.state_dict()[name], source[name]
        torch.testing.assert_close(weight[added], original[:n_base].mean(0).expand(3, -1).contiguous())
        keep = [i for i in range(rows) if i not in added]
        assert torch.equal(weight[keep], original[keep])  # every other row untouched
    # conversion changes attention only: with the causal mask it is the base model on its own tokens
    ids = torch.randint(0, n_base, (2, 9), generator=torch.Generator().manual_seed(0))
    base_model = Qwen2ForCausalLM.from_pretrained(base).eval()
    with torch.no_grad():
        ours, theirs = model(ids, annealed_attention_mask(9, 0.0)), base_model(ids).logits
    torch.testing.assert_close(ours[..., keep], theirs[..., keep])


def test_conversion_resizes_to_model_vocab_size_and_checks_the_ids(qwen_base):
    ck, base = qwen_base
    rows = ck.model.config.vocab_size
    model, tokenizer, added = _convert(base, vocab_size=rows + 6)
    weight = model.hf.get_input_embeddings().weight
    assert weight.shape[0] == rows + 6
    mean = ck.model.state_dict()["model.embed_tokens.weight"][: added[0]].mean(0)
    torch.testing.assert_close(weight[rows:], mean.expand(6, -1).contiguous())
    with pytest.raises(ValueError, match=r"model.vocab_size=\d+ is smaller than the tokenizer's \d+ tokens"):
        _convert(base, vocab_size=len(tokenizer) - 1)
    wrong = SpecialTokensConfig(bos="<|beginoftext|>", ids={"mask": 7})
    with pytest.raises(
        ValueError, match=r"model.tokens.ids.mask=7, but the tokenizer's mask token '<\|mask\|>'"
    ):
        _convert(base, tokens=wrong)


def test_a_dream_checkpoint_is_not_converted_but_imported(tmp_path, tokenizer):
    ck = write_dream_checkpoint(tmp_path / "dream")
    cfg = ModelConfig(base_model_uri=str(ck.path), dtype="float32")
    with pytest.raises(ValueError, match=f"diffucoder model import {ck.path} DST"):
        build_model(cfg, tokenizer)
