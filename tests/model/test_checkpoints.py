"""``diffucoder model import|export`` on tiny checkpoints in the released formats (tests/tiny_checkpoints.py).

The peers: a Dream checkpoint's weights are transformers' ``Qwen2ForCausalLM`` tensors, so the
imported model must give the logits of that very model run bidirectionally (the project forward
checked equal to Dream's reference code); a Qwen2 import must give transformers' own logits; the
tokenizer must tokenize as transformers' Qwen2 tokenizer reads the checkpoint's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from tiny_checkpoints import (
    DIFFUCODER_7B_INSTRUCT_CONFIG,
    DREAM_GENERATION_CONFIG,
    write_dream_checkpoint,
    write_qwen2_checkpoint,
)
from transformers import Qwen2ForCausalLM, Qwen2TokenizerFast

from diffucoder import storage
from diffucoder.decoding import diffusion_generate
from diffucoder.decoding.config import DecodingConfig
from diffucoder.model import load_model
from diffucoder.model.checkpoint import CheckpointError
from diffucoder.model.diffusion_lm import DiffusionLM
from diffucoder.model.exporter import export_checkpoint
from diffucoder.model.importer import CheckpointSourceError, import_checkpoint

PROBE = "def add(a, b):\n    return a + b<|mask|><|mask|>\n"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reference(ck, tokenizer) -> DiffusionLM:
    """The model whose weights the checkpoint holds, run as a diffusion LM with the checkpoint's ids."""
    config = ck.model.config
    config.mask_token_id, config.pad_token_id = tokenizer.mask_token_id, tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    return DiffusionLM(ck.model).eval()


def _left_padded(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tokenizer(t)["input_ids"] for t in (PROBE, "x = 1<|mask|>")]
    width = max(map(len, rows))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


@pytest.mark.parametrize(
    "tokenizer_form, sharded, instruct",
    [("slow", True, True), ("fast", False, True), ("slow", True, False)],
    ids=["instruct-vocab-merges-sharded", "instruct-tokenizer-json-single-file", "base-pad-is-eos"],
)
def test_dream_import_keeps_the_weights_and_the_checkpoints_tokens(
    tmp_path, tokenizer_form, sharded, instruct
):
    ck = write_dream_checkpoint(
        tmp_path / "src", tokenizer_form=tokenizer_form, sharded=sharded, instruct=instruct
    )
    result = import_checkpoint(str(ck.path), str(tmp_path / "dst"))
    dst = tmp_path / "dst"
    assert storage.is_complete(str(dst)) and result.kind == "dream"
    shards = sorted(p.name for p in ck.path.glob("*.safetensors"))
    assert (len(shards) > 1) == sharded
    assert shards == sorted(p.name for p in dst.glob("*.safetensors"))
    assert all(_sha(ck.path / name) == _sha(dst / name) for name in shards)  # byte for byte

    model, tokenizer = load_model(str(dst))
    ids = ck.token_ids
    pad = "<|dlm_pad|>" if instruct else "<|endoftext|>"  # DiffuCoder-Instruct's trained pad; Dream's eos
    assert (tokenizer.mask_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (
        ids["<|mask|>"],
        ids[pad],
        ids["<|endoftext|>"],
    )
    assert (model.mask_token_id, model.pad_token_id) == (ids["<|mask|>"], ids[pad])
    peer = Qwen2TokenizerFast.from_pretrained(str(ck.path))  # how transformers reads the released files
    assert tokenizer(PROBE)["input_ids"] == peer(PROBE)["input_ids"]
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == (
        "<|im_start|>user\nhi<|im_end|>\n"
    )

    reference = _reference(ck, tokenizer)
    probe = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    padded, attention = _left_padded(tokenizer)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        torch.testing.assert_close(model(probe), reference(probe), rtol=0, atol=0)
        torch.testing.assert_close(
            model(padded, attention, positions), reference(padded, attention, positions), rtol=0, atol=0
        )

    config = json.loads((dst / "config.json").read_text())
    assert config["diffusion_generation"] == {
        k: DREAM_GENERATION_CONFIG[k]
        for k in ("steps", "alg", "alg_temp", "eps", "temperature", "top_p", "top_k")
    }
    record = json.loads((dst / "import.json").read_text())
    assert (
        record["kind"] == "dream"
        and record["source_config"]["auto_map"] == DIFFUCODER_7B_INSTRUCT_CONFIG["auto_map"]
    )
    assert "auto_map" not in json.loads((dst / "tokenizer_config.json").read_text())  # no remote code


def test_qwen2_import_matches_transformers_and_stays_a_causal_lm(tmp_path):
    ck = write_qwen2_checkpoint(tmp_path / "src")
    result = import_checkpoint(str(ck.path), str(tmp_path / "dst"))
    assert result.kind == "qwen2" and result.mask_token_id is None
    assert (tmp_path / "dst" / "config.json").read_bytes() == (ck.path / "config.json").read_bytes()
    ids = torch.randint(0, result.tokenizer_tokens, (2, 11), generator=torch.Generator().manual_seed(0))
    source = Qwen2ForCausalLM.from_pretrained(str(ck.path)).eval()
    imported = Qwen2ForCausalLM.from_pretrained(str(tmp_path / "dst")).eval()
    with torch.no_grad():
        torch.testing.assert_close(imported(ids).logits, source(ids).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="plain causal LM"):
        load_model(str(tmp_path / "dst"))


def _greedy(model, tokenizer):
    prompt = tokenizer("<|im_start|>user\nWrite add.<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")
    cfg = DecodingConfig(max_new_tokens=12, steps=12, temperature=0.0, alg="entropy", top_p=None)
    return diffusion_generate(model, prompt["input_ids"], None, cfg).sequences


def test_export_to_dream_and_back_reproduces_logits_and_greedy_generations(tmp_path):
    ck = write_dream_checkpoint(tmp_path / "src")
    import_checkpoint(str(ck.path), str(tmp_path / "imported"))
    code = tmp_path / "dream-code"
    code.mkdir()
    for name in ("configuration_dream.py", "modeling_dream.py", "generation_utils.py"):
        (code / name).write_text(f"# {name} of a released snapshot\n")
    result = export_checkpoint(str(tmp_path / "imported"), str(tmp_path / "export"), dream_code=str(code))
    export = tmp_path / "export"
    assert result.code_files == ["configuration_dream.py", "modeling_dream.py", "generation_utils.py"]

    dream = json.loads((export / "config.json").read_text())
    assert set(dream) == set(DIFFUCODER_7B_INSTRUCT_CONFIG)  # the released field set, no more, no less
    for key in ("architectures", "auto_map", "model_type", "use_cache", "use_mrope", "use_sliding_window"):
        assert dream[key] == DIFFUCODER_7B_INSTRUCT_CONFIG[key], key
    assert dream["mask_token_id"] == ck.token_ids["<|mask|>"] and dream["torch_dtype"] == "float32"
    generation = json.loads((export / "generation_config.json").read_text())
    assert set(DREAM_GENERATION_CONFIG) - {"_from_model_config"} <= set(generation)
    assert (generation["alg"], generation["steps"]) == ("origin", 512)  # the imported defaults
    tokenizer_config = json.loads((export / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "Qwen2Tokenizer" and "auto_map" not in tokenizer_config
    assert {"tokenizer.json", "vocab.json", "merges.txt"} <= {p.name for p in export.iterdir()}

    import_checkpoint(str(export), str(tmp_path / "round-trip"))
    first, tok_a = load_model(str(tmp_path / "imported"))
    second, tok_b = load_model(str(tmp_path / "round-trip"))
    assert tok_a.get_vocab() == tok_b.get_vocab()
    assert (tok_a.mask_token_id, tok_a.pad_token_id) == (tok_b.mask_token_id, tok_b.pad_token_id)
    probe = tok_a(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(first(probe), second(probe), rtol=0, atol=0)
    assert torch.equal(_greedy(first, tok_a), _greedy(second, tok_b))


def test_export_of_a_project_trained_model_round_trips(tokenizer, small_cfg, tmp_path):
    from diffucoder.model import build_model, save_model

    model = build_model(small_cfg, tokenizer).eval()
    save_model(model, tokenizer, str(tmp_path / "m"))
    result = export_checkpoint(str(tmp_path / "m"), str(tmp_path / "export"))
    assert result.code_files == []
    generation = json.loads((tmp_path / "export" / "generation_config.json").read_text())
    assert (generation["alg"], generation["temperature"]) == (
        DecodingConfig().alg,
        DecodingConfig().temperature,
    )
    import_checkpoint(str(tmp_path / "export"), str(tmp_path / "back"))
    back, tok = load_model(str(tmp_path / "back"))
    probe = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(back(probe), model(probe), rtol=0, atol=0)
    assert torch.equal(_greedy(model, tokenizer), _greedy(back, tok))
    with pytest.raises(FileNotFoundError, match="no configuration_dream.py, modeling_dream.py"):
        export_checkpoint(str(tmp_path / "m"), str(tmp_path / "export-2"), dream_code=str(tmp_path))
    assert not (tmp_path / "export-2").exists()


def test_import_from_an_s3_snapshot(tmp_path, s3_env):
    ck = write_dream_checkpoint(tmp_path / "src")
    for path in ck.path.iterdir():  # an uploaded snapshot: plain files, no manifest
        storage.put_file(path, f"{s3_env}/hub/DiffuCoder-tiny/{path.name}")
    import_checkpoint(f"{s3_env}/hub/DiffuCoder-tiny", f"{s3_env}/models/DiffuCoder-tiny")
    model, tokenizer = load_model(f"{s3_env}/models/DiffuCoder-tiny")
    probe = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(probe), _reference(ck, tokenizer)(probe), rtol=0, atol=0)


# ---- bad input: a named error, and nothing written ----


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **changes}))


def _shards(path):
    return sorted(path.glob("model-*.safetensors"))


def _drop_second_shard(path):
    _shards(path)[1].unlink()


def _truncate_last_shard(path):
    shard = _shards(path)[-1]
    shard.write_bytes(shard.read_bytes()[:-100])


def _unknown_type(path):
    _edit_config(path, model_type="llama", architectures=["LlamaForCausalLM"])


def _more_layers_than_weights(path):
    _edit_config(path, num_hidden_layers=3)


def _mask_id_the_tokenizer_lacks(path):
    _edit_config(path, mask_token_id=10_000)


def _mask_id_of_another_token(path):
    config = json.loads((path / "tokenizer_config.json").read_text())
    im_end = next(int(i) for i, t in config["added_tokens_decoder"].items() if t["content"] == "<|im_end|>")
    _edit_config(path, mask_token_id=im_end)


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (_unknown_type, CheckpointError, "model_type 'llama' is not supported"),
        (_drop_second_shard, CheckpointError, "names model-00002-of-.* which the directory does not hold"),
        (_truncate_last_shard, CheckpointError, "truncated"),
        (_more_layers_than_weights, CheckpointError, r"missing \d+ tensor"),
        (
            _mask_id_the_tokenizer_lacks,
            CheckpointError,
            "mask_token_id 10000, but the tokenizer .* has no such token",
        ),
        (
            _mask_id_of_another_token,
            CheckpointError,
            "mask token '<|mask|>' has id .*config.json's mask_token_id",
        ),
    ],
    ids=[
        "unknown-model-type",
        "missing-shard",
        "truncated-shard",
        "weights-vs-config",
        "no-mask-token",
        "other-mask",
    ],
)
def test_bad_checkpoints_are_named_and_nothing_is_written(tmp_path, damage, error, message):
    ck = write_dream_checkpoint(tmp_path / "src")
    damage(ck.path)
    with pytest.raises(error, match=message):
        import_checkpoint(str(ck.path), str(tmp_path / "dst"))
    assert not (tmp_path / "dst").exists()


def test_an_embedding_smaller_than_the_tokenizer_is_refused(tmp_path):
    ck = write_dream_checkpoint(tmp_path / "src", extra_rows=-3)  # the last 3 tokens have no row
    with pytest.raises(CheckpointError, match=r"embedding has \d+ rows but the tokenizer has \d+ tokens"):
        import_checkpoint(str(ck.path), str(tmp_path / "dst"))
    assert not (tmp_path / "dst").exists()


def test_an_existing_destination_and_a_missing_source_are_refused(tmp_path):
    ck = write_dream_checkpoint(tmp_path / "src")
    import_checkpoint(str(ck.path), str(tmp_path / "dst"))
    before = sorted(os.listdir(tmp_path / "dst"))
    with pytest.raises(FileExistsError, match="already holds files"):
        import_checkpoint(str(ck.path), str(tmp_path / "dst"))
    assert sorted(os.listdir(tmp_path / "dst")) == before
    with pytest.raises(CheckpointSourceError, match="no such checkpoint directory"):
        import_checkpoint(str(tmp_path / "nowhere" / "x" / "y"), str(tmp_path / "dst-2"))


def test_load_model_on_a_dream_checkpoint_names_the_import_command(tmp_path):
    ck = write_dream_checkpoint(tmp_path / "src")
    with pytest.raises(ValueError, match=f"import it first: diffucoder model import {ck.path} DST"):
        load_model(str(ck.path))
    storage.seal_dir(ck.path)  # sealed or not, a released format is not loaded as it is
    with pytest.raises(ValueError, match="diffucoder model import"):
        load_model(str(ck.path))


@pytest.mark.parametrize("offline_env", ["endpoint", "offline"])
def test_a_hub_id_without_the_network_fails_saying_so(tmp_path, unused_port, offline_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "hf-home")
    if offline_env == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{unused_port()}"  # nothing listens there
    cmd = [
        sys.executable,
        "-m",
        "diffucoder.cli",
        "model",
        "import",
        "apple/DiffuCoder-7B-Instruct",
        str(tmp_path / "d"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "the Hugging Face hub cannot be reached from here" in proc.stderr
    assert "huggingface-cli download apple/DiffuCoder-7B-Instruct" in proc.stderr
    assert not (tmp_path / "d").exists()


def test_cli_import_and_export(tmp_path):
    ck = write_dream_checkpoint(tmp_path / "src")
    run = [sys.executable, "-m", "diffucoder.cli", "model"]
    out = subprocess.run(
        [*run, "import", str(ck.path), str(tmp_path / "m")], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)["mask_token_id"] == ck.token_ids["<|mask|>"]
    out = subprocess.run(
        [*run, "export", str(tmp_path / "m"), str(tmp_path / "e"), "--format", "dream"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "copy them in (or pass --dream-code)" in out.stdout
