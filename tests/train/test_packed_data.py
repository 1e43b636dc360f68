"""Packed shards (stages 1-2): order, streaming one shard at a time, and errors that name the item."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from train_helpers import SEQ_LEN

from diffucoder.train.packed_data import PackedShards


def _copy(packed_dir, tmp_path) -> Path:
    dst = tmp_path / "packed"
    shutil.copytree(packed_dir, dst)
    return dst


def test_reads_the_data_stage_output(packed_dir, tokenizer, tmp_path):
    src = PackedShards(packed_dir, SEQ_LEN, len(tokenizer), tmp_path)
    meta = json.loads((Path(packed_dir) / "meta.json").read_text())
    assert len(src) == meta["rows"] and len(src.shards) >= 2
    order = src.order(epoch=0, seed=0)
    assert sorted(order.tolist()) == list(range(len(src)))
    assert not np.array_equal(order, src.order(epoch=1, seed=0))
    row = src.get(int(order[0]))["input_ids"]
    assert row.shape == (SEQ_LEN,) and row.max() < len(tokenizer)


def test_order_is_grouped_by_shard(packed_dir, tokenizer, tmp_path):
    """Shuffling inside shards keeps one shard in memory: the order visits each shard in one run."""
    src = PackedShards(packed_dir, SEQ_LEN, len(tokenizer), tmp_path)
    shard_of = np.searchsorted(src.starts, src.order(0, 5), side="right") - 1
    assert (np.diff(shard_of) != 0).sum() == len(src.shards) - 1


def test_empty_shard_is_named(packed_dir, tokenizer, tmp_path):
    root = _copy(packed_dir, tmp_path)
    pq.write_table(
        pa.table({"input_ids": pa.array([], type=pa.list_(pa.int32()))}), root / "shard-00001.parquet"
    )
    with pytest.raises(ValueError, match=r"shard-00001\.parquet: empty shard"):
        PackedShards(str(root), SEQ_LEN, len(tokenizer), tmp_path)


def test_missing_column_is_named(packed_dir, tokenizer, tmp_path):
    root = _copy(packed_dir, tmp_path)
    pq.write_table(pa.table({"text": ["x"]}), root / "shard-00000.parquet")
    with pytest.raises(ValueError, match=r"shard-00000\.parquet: no 'input_ids' column"):
        PackedShards(str(root), SEQ_LEN, len(tokenizer), tmp_path)


def test_row_longer_than_seq_len_is_named(packed_dir, tokenizer, tmp_path):
    root = _copy(packed_dir, tmp_path)
    rows = [[1] * SEQ_LEN, [1] * (SEQ_LEN + 5)]
    pq.write_table(
        pa.table({"input_ids": pa.array(rows, type=pa.list_(pa.int32()))}), root / "shard-00000.parquet"
    )
    src = PackedShards(str(root), SEQ_LEN, len(tokenizer), tmp_path)
    with pytest.raises(
        ValueError, match=rf"shard-00000\.parquet: row 1 field 'input_ids' has {SEQ_LEN + 5} tokens"
    ):
        src.get(0)


def test_out_of_vocab_ids_are_named(packed_dir, tmp_path):
    with pytest.raises(ValueError, match=r"row \d+ has token id \d+ outside the model vocab of 10"):
        src = PackedShards(packed_dir, SEQ_LEN, 10, tmp_path)
        src.get(0)


def test_seq_len_mismatch_and_missing_meta(packed_dir, tokenizer, tmp_path):
    with pytest.raises(ValueError, match=f"packed to seq_len={SEQ_LEN}, but the stage's seq_len is 64"):
        PackedShards(packed_dir, 64, len(tokenizer), tmp_path)
    with pytest.raises(FileNotFoundError, match="meta.json: missing"):
        PackedShards(str(tmp_path), SEQ_LEN, len(tokenizer), tmp_path)


def test_reads_shards_from_s3(s3_env, packed_dir, tokenizer, tmp_path):
    from diffucoder import storage

    uri = f"{s3_env}/packed"
    storage.put_dir(packed_dir, uri)
    remote = PackedShards(uri, SEQ_LEN, len(tokenizer), tmp_path / "cache")
    local = PackedShards(packed_dir, SEQ_LEN, len(tokenizer), tmp_path)
    order = remote.order(0, 0)
    assert np.array_equal(order, local.order(0, 0))
    assert np.array_equal(remote.get(int(order[7]))["input_ids"], local.get(int(order[7]))["input_ids"])


def test_unreachable_s3_endpoint_names_the_url(monkeypatch, tmp_path):
    from diffucoder import storage

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage.configure(storage.settings().model_copy(update={"max_attempts": 1}))
    try:
        with pytest.raises(storage.StorageUnreachableError, match=r"127\.0\.0\.1:9"):
            PackedShards("s3://bucket/packed", SEQ_LEN, 100, tmp_path)
    finally:
        from diffucoder.config import StorageConfig

        storage.configure(StorageConfig())
