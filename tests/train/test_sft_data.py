"""SFT rows (stage 3): chat template, fixed-length <|dlm_pad|> padding, prompt mask, named errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from train_helpers import SFT_LEN

from diffucoder.train.sft_data import SFTExamples, encode_example


def test_template_padding_and_prompt_mask(tokenizer):
    messages = [
        {"role": "user", "content": "add one"},
        {"role": "assistant", "content": "def f(x):\n    return x + 1"},
    ]
    ex = encode_example(messages, tokenizer, 96, "row")
    ids, prompt = ex["input_ids"], ex["prompt_mask"]
    n_prompt = int(prompt.sum())
    assert prompt[:n_prompt].all() and not prompt[n_prompt:].any()
    assert tokenizer.decode(ids[:n_prompt]) == "<|im_start|>user\nadd one<|im_end|>\n<|im_start|>assistant\n"
    real = ids != tokenizer.pad_token_id
    n_real = int(real.sum())
    assert real[:n_real].all() and (ids[n_real:] == tokenizer.pad_token_id).all() and n_real < 96
    assert tokenizer.decode(ids[n_prompt:n_real]) == "def f(x):\n    return x + 1<|im_end|>\n"


def test_reads_the_data_stage_rows(sft_file, tokenizer):
    src = SFTExamples(sft_file, tokenizer, SFT_LEN)
    rows = len(Path(sft_file).read_text().splitlines())
    assert len(src) == rows and src.input_ids.shape == (rows, SFT_LEN)
    assert (src.input_ids == tokenizer.pad_token_id).any(axis=1).all()  # every example carries pads
    assert sorted(src.order(0, 0).tolist()) == list(range(rows))


def _write(tmp_path, rows):
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GOOD = {"id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x = 1"}]}


def test_row_without_messages_is_named(tmp_path, tokenizer):
    path = _write(tmp_path, [GOOD, {"id": "b", "text": "no messages here"}])
    with pytest.raises(ValueError, match=r"sft\.jsonl: row 1 \(id='b'\): field 'messages' is missing"):
        SFTExamples(path, tokenizer, 64)


def test_last_turn_must_be_the_answer(tmp_path, tokenizer):
    path = _write(tmp_path, [{"id": "c", "messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(ValueError, match="row 0 .*last message must be the assistant"):
        SFTExamples(path, tokenizer, 64)


def test_too_long_row_is_named(tmp_path, tokenizer):
    long = {
        "id": "d",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x = 1\n" * 50}],
    }
    path = _write(tmp_path, [GOOD, long])
    with pytest.raises(ValueError, match=r"row 1 \(id='d'\): \d+ tokens .* exceed instruct\.seq_len=64"):
        SFTExamples(path, tokenizer, 64)


def test_empty_and_missing_inputs(tmp_path, tokenizer):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.jsonl: no SFT rows"):
        SFTExamples(str(empty), tokenizer, 64)
    with pytest.raises(FileNotFoundError, match="nope.jsonl: SFT file does not exist"):
        SFTExamples(str(tmp_path / "nope.jsonl"), tokenizer, 64)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl: line 2: invalid JSON"):
        SFTExamples(str(bad), tokenizer, 64)


def test_parquet_rows(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([GOOD, GOOD]), tmp_path / "sft.parquet")
    src = SFTExamples(str(tmp_path), tokenizer, 64)
    assert len(src) == 2 and np.array_equal(src.input_ids[0], src.input_ids[1])
