"""save_model/load_model round trips (local and through a real moto S3 server) and conversion rules."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from diffucoder import storage
from diffucoder.model import build_model, load_model, save_model
from diffucoder.model.config import ModelConfig


def _probe(tokenizer) -> torch.Tensor:
    ids = tokenizer("def f(x):\n    return x + 1\n", return_tensors="pt")["input_ids"]
    ids[:, 3:6] = tokenizer.mask_token_id
    return ids


def _assert_same_model(original, loaded, tok_a, tok_b):
    ids = _probe(tok_a)
    original.eval()
    with torch.no_grad():
        torch.testing.assert_close(original(ids), loaded(ids), atol=0, rtol=0)
    assert tok_b.get_vocab() == tok_a.get_vocab()
    assert (tok_b.mask_token_id, tok_b.pad_token_id, tok_b.eos_token_id) == (
        tok_a.mask_token_id,
        tok_a.pad_token_id,
        tok_a.eos_token_id,
    )
    assert loaded.mask_token_id == original.mask_token_id


def test_local_round_trip_identical_logits(tokenizer, small_cfg, tmp_path):
    model = build_model(small_cfg, tokenizer)
    save_model(model, tokenizer, str(tmp_path / "m"))
    assert storage.is_complete(str(tmp_path / "m"))
    assert any(p.suffix == ".safetensors" for p in (tmp_path / "m").iterdir())
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["diffusion_lm"] is True and config["diffusion_shift"] == "ar"
    assert config["mask_token_id"] == tokenizer.mask_token_id
    loaded, tok = load_model(str(tmp_path / "m"))
    _assert_same_model(model, loaded, tokenizer, tok)
    # still bidirectional after loading (the causal flag lives on modules, not in config.json)
    ids = _probe(tokenizer)
    changed = ids.clone()
    changed[:, -1] = tokenizer.mask_token_id
    with torch.no_grad():
        assert (loaded(ids)[:, 0] - loaded(changed)[:, 0]).abs().max() > 1e-5


def test_s3_round_trip_identical_logits(tokenizer, small_cfg, s3_env):
    model = build_model(small_cfg, tokenizer)
    uri = f"{s3_env}/runs/x/final"
    save_model(model, tokenizer, uri)
    assert storage.is_complete(uri)
    loaded, tok = load_model(uri)
    _assert_same_model(model, loaded, tokenizer, tok)


def test_refuses_plain_causal_lm_and_converts_it_explicitly(tokenizer, small_cfg, tmp_path):
    base_dir = tmp_path / "qwen-base"
    # A "base" causal LM whose vocab lacks our last tokens, as Qwen's lacks <|mask|>/<|dlm_pad|>.
    base_cfg = Qwen2Config(
        vocab_size=len(tokenizer) - 3,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    base = Qwen2ForCausalLM(base_cfg).eval()
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    storage.seal_dir(base_dir)
    with pytest.raises(ValueError, match="does not declare diffusion_lm"):
        load_model(str(base_dir))

    cfg = small_cfg.model_copy(update={"base_model_uri": str(base_dir)})
    model = build_model(cfg, tokenizer).eval()
    assert model.hf.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.hf.config.diffusion_lm is True
    # Conversion changes only attention: with a causal mask it reproduces the base model exactly.
    from diffucoder.model import annealed_attention_mask

    ids = torch.randint(0, len(tokenizer) - 3, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(ids, annealed_attention_mask(12, 0.0))[..., : len(tokenizer) - 3]
        torch.testing.assert_close(ours, base(ids).logits)


def test_unsupported_base_and_missing_dirs_are_named(tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        build_model(ModelConfig(base_model_uri=str(tmp_path), dtype="float32"), tokenizer)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(str(tmp_path / "nope"))


def test_incomplete_artifact_is_refused(tokenizer, small_cfg, tmp_path):
    model = build_model(small_cfg, tokenizer)
    save_model(model, tokenizer, str(tmp_path / "m"))
    (tmp_path / "m" / "MANIFEST.json").unlink()  # as if the save was interrupted
    with pytest.raises(storage.IncompleteArtifactError, match="MANIFEST"):
        load_model(str(tmp_path / "m"))
