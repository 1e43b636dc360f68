"""``diffucoder model add-pad``: DiffuCoder-Instruct's own pad token added to an imported Base model.

The peer is the model before the step: every weight but the new token's rows, and every logit but
the new token's column, must be unchanged; the new rows start at the mean of the tokenizer's rows.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tiny_checkpoints import write_dream_checkpoint

from diffucoder import storage
from diffucoder.model import load_model
from diffucoder.model.importer import import_checkpoint
from diffucoder.model.pad_token import add_pad_token
from diffucoder.train.sft_data import encode_example

PROBE = "def add(a, b):\n    return a + b<|mask|>\n"


def _import_base(tmp_path, **kwargs) -> str:
    ck = write_dream_checkpoint(tmp_path / "released", instruct=False, **kwargs)
    base = str(tmp_path / "base")
    import_checkpoint(str(ck.path), base)
    return base


@pytest.mark.parametrize("spare_rows", [10, 0], ids=["inside-the-padded-rows", "resized"])
def test_the_pad_is_appended_at_the_mean_and_nothing_else_changes(tmp_path, spare_rows):
    base = _import_base(tmp_path, extra_rows=spare_rows)
    before, base_tok = load_model(base)
    n = len(base_tok)
    result = add_pad_token(base, str(tmp_path / "padded"))
    model, tokenizer = load_model(str(tmp_path / "padded"))

    assert (result.pad_token, result.pad_token_id, result.appended) == ("<|dlm_pad|>", n, True)
    assert (tokenizer.pad_token, tokenizer.pad_token_id, model.pad_token_id) == ("<|dlm_pad|>", n, n)
    assert (tokenizer.mask_token_id, tokenizer.eos_token_id) == (
        base_tok.mask_token_id,
        base_tok.eos_token_id,
    )
    assert (model.mask_token_id, len(tokenizer)) == (before.mask_token_id, n + 1)
    rows = before.hf.get_input_embeddings().weight.shape[0]
    assert model.hf.get_input_embeddings().weight.shape[0] == max(rows, n + 1) == result.vocab_size

    old, new = before.hf.state_dict(), model.hf.state_dict()
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        torch.testing.assert_close(new[name][n], old[name][:n].mean(0), rtol=0, atol=1e-7)
        others = [i for i in range(rows) if i != n]
        assert torch.equal(new[name][others], old[name][others]), name
    assert all(
        torch.equal(new[k], old[k]) for k in old if k not in ("model.embed_tokens.weight", "lm_head.weight")
    )

    probe = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    keep = [i for i in range(rows) if i != n]
    with torch.no_grad():
        assert torch.equal(model(probe)[..., keep], before(probe)[..., keep])
    example = encode_example(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x = 1"}], tokenizer, 64, "row 0"
    )
    assert example["input_ids"][-1] == n  # instruction tuning now pads with it


def test_a_pad_token_the_vocabulary_holds_is_only_given_the_role(tmp_path):
    """A tokenizer that holds ``<|dlm_pad|>`` but pads with eos: the trained row is kept as it is."""
    ck = write_dream_checkpoint(tmp_path / "released", instruct=True)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        declared = json.loads((ck.path / name).read_text())
        (ck.path / name).write_text(json.dumps({**declared, "pad_token": "<|endoftext|>"}))
    base = str(tmp_path / "base")
    import_checkpoint(str(ck.path), base)
    before, base_tok = load_model(base)
    assert base_tok.pad_token == "<|endoftext|>"
    result = add_pad_token(base, str(tmp_path / "padded"))
    assert result.appended is False and result.pad_token_id == ck.token_ids["<|dlm_pad|>"]
    model, tokenizer = load_model(str(tmp_path / "padded"))
    assert len(tokenizer) == len(base_tok) and model.pad_token_id == ck.token_ids["<|dlm_pad|>"]
    old = before.hf.state_dict()
    assert all(torch.equal(w, old[k]) for k, w in model.hf.state_dict().items())


def test_refusals_write_nothing(tmp_path):
    base = _import_base(tmp_path)
    with pytest.raises(ValueError, match="'<\\|endoftext\\|>' is already the pad token"):
        add_pad_token(base, str(tmp_path / "a"), token="<|endoftext|>")
    with pytest.raises(ValueError, match="is the model's mask or eos token"):
        add_pad_token(base, str(tmp_path / "b"), token="<|mask|>")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    add_pad_token(base, str(tmp_path / "c"))
    with pytest.raises(FileExistsError, match="already holds files"):
        add_pad_token(base, str(tmp_path / "c"))
    assert storage.is_complete(str(tmp_path / "c"))


def test_cli_add_pad(tmp_path):
    base = _import_base(tmp_path)
    cmd = [sys.executable, "-m", "diffucoder.cli", "model", "add-pad", base, str(tmp_path / "out")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["pad_token"] == "<|dlm_pad|>"
    _, tokenizer = load_model(str(tmp_path / "out"))
    assert tokenizer.pad_token == "<|dlm_pad|>"
