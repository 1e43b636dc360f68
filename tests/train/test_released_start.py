"""Stages 2 and 3 started from an imported DiffuCoder-Base-format checkpoint (tests/tiny_checkpoints.py).

The released Base model (and Dream's) declares ``<|endoftext|>`` as its pad token, unlike our own
tokenizer and DiffuCoder-Instruct's ``<|dlm_pad|>``. A stage started from it must train with the
checkpoint's own tokens: SFT rows padded with its pad (the pads are scored response tokens, so the
model learns to end with it), mid-training on rows packed with its tokenizer, and the result saved
with the tokenizer it started from.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tiny_checkpoints import write_dream_checkpoint
from train_helpers import run_train, small_overrides, train_cmd, train_env

from diffucoder.data.pack import pack_shards
from diffucoder.model import load_model
from diffucoder.model.importer import import_checkpoint
from diffucoder.train.sft_data import SFTExamples

SFT_LEN = 384  # the tiny checkpoint's 480-token BPE spends more tokens per row than the test vocab
# the tiny checkpoint's dimensions (tests/tiny_checkpoints.py TINY_DIMS): --init loads them as saved
DREAM_DIMS = {
    "model.hidden_size": 32,
    "model.num_hidden_layers": 2,
    "model.num_attention_heads": 4,
    "model.num_key_value_heads": 2,
    "model.intermediate_size": 64,
}


@pytest.fixture
def diffucoder_base(tmp_path):
    """A tiny DiffuCoder-Base-format checkpoint (pad = eos), imported as a run would read it."""
    ck = write_dream_checkpoint(tmp_path / "released", instruct=False)
    start = tmp_path / "models" / "DiffuCoder-Base-tiny"
    import_checkpoint(str(ck.path), str(start))
    return ck, str(start)


def _changed(start: str, final: str) -> bool:
    before, _ = load_model(start)
    after, _ = load_model(final)
    trained, initial = after.hf.state_dict(), before.hf.state_dict()
    return any(not torch.equal(trained[name], initial[name]) for name in initial)


def _assert_same_tokens(start: str, final: str) -> None:
    _, released = load_model(start)
    model, tokenizer = load_model(final)
    assert tokenizer.get_vocab() == released.get_vocab()
    roles = ("mask_token_id", "pad_token_id", "eos_token_id")
    assert [getattr(tokenizer, r) for r in roles] == [getattr(released, r) for r in roles]
    assert (model.mask_token_id, model.pad_token_id) == (released.mask_token_id, released.pad_token_id)


def test_sft_rows_are_padded_with_the_checkpoints_own_pad(diffucoder_base, sft_file):
    ck, start = diffucoder_base
    _, tokenizer = load_model(start)
    eos = ck.token_ids["<|endoftext|>"]
    assert tokenizer.pad_token_id == eos and "<|dlm_pad|>" not in tokenizer.get_vocab()
    examples = SFTExamples(sft_file, tokenizer, SFT_LEN)
    row = examples.get(0)
    ids, prompt = row["input_ids"], row["prompt_mask"]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    last_im_end = int(np.flatnonzero(ids == im_end)[-1])
    # after the answer's <|im_end|>\n: the checkpoint's pad up to seq_len, none of it prompt
    assert (ids[last_im_end + 2 :] == eos).all() and last_im_end + 2 < SFT_LEN
    assert not prompt[last_im_end:].any()


def test_instruct_tuning_from_an_imported_diffucoder_base(diffucoder_base, tmp_path, sft_file, mlflow_sqlite):
    _, start = diffucoder_base
    out = tmp_path / "instruct"
    overrides = small_overrides(
        "instruct",
        **DREAM_DIMS,
        **{"instruct.max_steps": 3, "instruct.micro_batch_size": 2, "instruct.seq_len": SFT_LEN},
    )
    run_train(train_cmd("instruct", sft_file, str(out), overrides, init=start), train_env(mlflow_sqlite))
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 3
    _assert_same_tokens(start, result["final_model_uri"])
    assert _changed(start, result["final_model_uri"])


def test_midtraining_from_an_imported_diffucoder_base(diffucoder_base, tmp_path, corpus_texts, mlflow_sqlite):
    _, start = diffucoder_base
    text = tmp_path / "text" / "shard-00000.parquet"
    text.parent.mkdir()
    pq.write_table(pa.table({"text": corpus_texts}), text)
    packed = str(tmp_path / "packed")
    # packed with the start model's tokenizer, as the DAG packs for start_from=midtrain
    pack_shards([str(text)], start, 32, packed, rows_per_shard=400)
    out = tmp_path / "midtrain"
    overrides = small_overrides("midtrain", **DREAM_DIMS, **{"midtrain.max_steps": 3})
    run_train(train_cmd("midtrain", packed, str(out), overrides, init=start), train_env(mlflow_sqlite))
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 3
    _assert_same_tokens(start, result["final_model_uri"])
    assert _changed(start, result["final_model_uri"])
