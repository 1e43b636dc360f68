"""Tokenizer: byte-level round trips, atomic special tokens, chat template, save/load, shard training."""

from __future__ import annotations

import inspect
import json.decoder
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from diffucoder import storage
from diffucoder.data.tokenizer import (
    CHAT_TEMPLATE,
    DEFAULT_SPECIAL_TOKENS,
    add_diffusion_tokens,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
    train_tokenizer_from_shards,
)

CORPUS = [inspect.getsource(json.decoder), inspect.getsource(textwrap)]


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return train_tokenizer(CORPUS, vocab_size=600)


def test_vocab_roles_and_special_ids(tok):
    assert len(tok) == 600
    assert [tok.convert_tokens_to_ids(t) for t in DEFAULT_SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 0
    assert tok.mask_token == "<|mask|>" and tok.mask_token_id == 1
    assert tok.pad_token == "<|dlm_pad|>" and tok.pad_token_id == 2


@pytest.mark.parametrize(
    "text",
    [
        "def f(x):\n    return x ** 2  # square\n",
        "\tindent\r\nwindows line\n\n\n   trailing   ",
        "unicode: héllo wörld 你好 🙂 ∑x²",
        "numbers 1234567890 and 3.14e-10",
    ],
)
def test_round_trip_is_lossless(tok, text):
    assert tok.decode(tok(text)["input_ids"]) == text


def test_bpe_learned_merges(tok):
    # the corpus is Python: common keywords become single tokens
    assert len(tok(" return")["input_ids"]) == 1
    assert len(tok(" self")["input_ids"]) == 1


def test_special_tokens_are_atomic(tok):
    ids = tok("x<|mask|><|mask|>y<|dlm_pad|><|endoftext|>")["input_ids"]
    assert ids.count(tok.mask_token_id) == 2
    assert tok.pad_token_id in ids and tok.eos_token_id in ids
    # a broken special token is ordinary text, not the special id
    partial = tok("<|mask|")["input_ids"]
    assert tok.mask_token_id not in partial
    assert tok.decode(partial) == "<|mask|"


def test_chat_template(tok):
    messages = [{"role": "user", "content": "Write f."}, {"role": "assistant", "content": "def f(): pass"}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\nWrite f.<|im_end|>\n<|im_start|>assistant\ndef f(): pass<|im_end|>\n"
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nWrite f.<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.apply_chat_template(messages[:1], tokenize=True, add_generation_prompt=True)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(tok.convert_tokens_to_ids("<|im_end|>")) == 1
    assert tok.decode(ids) == prompt


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match="<|mask|>"):
        train_tokenizer(CORPUS, vocab_size=600, special_tokens=["<|endoftext|>"])


def test_save_load_local_and_s3(tok, tmp_path, s3_env):
    for uri in (str(tmp_path / "tok"), f"{s3_env}/tokenizers/tiny"):
        save_tokenizer(tok, uri)
        assert storage.is_complete(uri)
        loaded = load_tokenizer(uri)
        assert loaded.get_vocab() == tok.get_vocab()
        assert (loaded.mask_token_id, loaded.pad_token_id, loaded.eos_token_id) == (1, 2, 0)
        sample = "def g(a, b):\n    return a<|mask|>b\n"
        assert loaded(sample)["input_ids"] == tok(sample)["input_ids"]
        assert loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == (
            "<|im_start|>user\nhi<|im_end|>\n"
        )


def test_load_keeps_a_foreign_tokenizer_and_conversion_appends_the_diffusion_tokens(tmp_path):
    """Loading honours what a tokenizer declares; converting a base appends bos, mask, pad in order."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    raw.add_tokens(list(pre_tokenizers.ByteLevel.alphabet()))
    foreign = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    foreign.save_pretrained(tmp_path / "foreign")
    before = len(foreign)
    loaded = load_tokenizer(str(tmp_path / "foreign"))
    assert len(loaded) == before and loaded.mask_token is None
    assert loaded.pad_token == "<|endoftext|>"  # the pad it declares, not ours

    added = add_diffusion_tokens(loaded, bos="<|beginoftext|>")
    assert added == [before, before + 1, before + 2]
    assert loaded.convert_ids_to_tokens(added) == ["<|beginoftext|>", "<|mask|>", "<|dlm_pad|>"]
    assert (loaded.bos_token_id, loaded.mask_token_id, loaded.pad_token_id) == tuple(added)
    assert loaded.eos_token_id == foreign.eos_token_id
    assert loaded.chat_template == CHAT_TEMPLATE
    assert loaded("a<|mask|>")["input_ids"][-1] == loaded.mask_token_id
    assert add_diffusion_tokens(loaded, bos="<|beginoftext|>") == []  # already there: nothing appended


def test_missing_tokenizer_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_tokenizer(str(tmp_path / "nothing-here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(str(tmp_path / "empty"))


def test_train_from_parquet_shards(tmp_path):
    shards = []
    for i, text in enumerate(CORPUS):
        path = tmp_path / f"shard-{i:05d}.parquet"
        pq.write_table(pa.table({"id": [str(i), f"{i}-empty"], "text": [text, ""]}), path)
        shards.append(str(path))
    out = str(tmp_path / "tokenizer")
    trained = train_tokenizer_from_shards(shards, vocab_size=600, out_uri=out)
    assert trained.get_vocab() == train_tokenizer(CORPUS, vocab_size=600).get_vocab()
    assert load_tokenizer(out).get_vocab() == trained.get_vocab()


def test_shard_errors_name_the_file(tmp_path):
    no_text = tmp_path / "shard-00000.parquet"
    pq.write_table(pa.table({"id": ["a"], "content": ["x"]}), no_text)
    with pytest.raises(ValueError, match=r"shard-00000\.parquet.*no 'text' column"):
        train_tokenizer_from_shards([str(no_text)], 600, str(tmp_path / "out"))
    garbage = tmp_path / "shard-00001.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"shard-00001\.parquet: not a readable Parquet"):
        train_tokenizer_from_shards([str(garbage)], 600, str(tmp_path / "out"))
    with pytest.raises(ValueError, match="no shards"):
        train_tokenizer_from_shards([], 600, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing half-written
