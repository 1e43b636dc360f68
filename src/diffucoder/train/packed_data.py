"""Packed token shards for stages 1-2 (format: docs/interfaces.md, written by ``diffucoder.data.pack``).

A data URI is a directory (local or ``s3://``) with ``meta.json`` and ``shard-*.parquet`` files
whose ``input_ids`` column holds rows of exactly ``seq_len`` token ids. Order per epoch: the shards
are permuted, then the rows inside each shard, both from (seed, epoch). Shuffling within a shard
rather than across the corpus keeps one shard in memory at a time (streaming): the reader loads a
shard when the order first enters it and drops the previous one. Remote shards are downloaded
into a local cache directory once.

Every shard is checked when it is loaded (column present, row length, token ids below the vocab);
shard sizes come from the Parquet footers at open time, so an empty shard fails before training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from diffucoder import storage
from diffucoder.train.batches import epoch_rng

META_FILE = "meta.json"


class PackedShards:
    """A :class:`~diffucoder.train.batches.SampleSource` over packed Parquet shards.

    Args:
        data_uri: directory with ``meta.json`` and the shards.
        seq_len: the stage's ``seq_len``; must equal the shards' (meta.json and every row).
        vocab_size: ids must be below this (the model's embedding rows).
        cache_dir: local directory for downloaded remote shards.

    Raises:
        FileNotFoundError: no meta.json or no shards under ``data_uri``.
        ValueError: naming the shard (and row) for an empty shard, a missing ``input_ids`` column,
            a wrong row length, or a token id outside the vocab.
    """

    def __init__(self, data_uri: str, seq_len: int, vocab_size: int, cache_dir: str | Path):
        self.data_uri = data_uri
        self.seq_len = seq_len
        self.vocab_size = vocab_size
        self.cache_dir = Path(cache_dir)
        self.meta = self._read_meta()
        self.shards = self._shard_uris()
        self.rows_per_shard = np.array([self._footer(uri).num_rows for uri in self.shards], dtype=np.int64)
        for uri, rows in zip(self.shards, self.rows_per_shard, strict=True):
            if rows == 0:
                raise ValueError(f"{uri}: empty shard (0 rows); re-run the data stage or remove it")
        self.starts = np.concatenate(
            [[0], np.cumsum(self.rows_per_shard)]
        )  # global index of each shard's row 0
        self._loaded: tuple[int, np.ndarray] | None = None

    def _read_meta(self) -> dict:
        uri = storage.join(self.data_uri, META_FILE)
        if not storage.exists(uri):
            raise FileNotFoundError(
                f"{uri}: missing; --data must be a packed-shard dir from `diffucoder data pack`"
            )
        try:
            meta = json.loads(storage.read_text(uri))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{uri}: invalid JSON: {exc}") from exc
        if meta.get("seq_len") != self.seq_len:
            raise ValueError(
                f"{uri}: shards are packed to seq_len={meta.get('seq_len')}, but the stage's seq_len is "
                f"{self.seq_len}; set <stage>.seq_len={meta.get('seq_len')} or re-pack"
            )
        return meta

    def _shard_uris(self) -> list[str]:
        names = self.meta.get("shards")
        if names:
            return [storage.join(self.data_uri, name) for name in names]
        found = [u for u in storage.list_files(self.data_uri) if u.endswith(".parquet")]
        if not found:
            raise FileNotFoundError(f"{self.data_uri}: no *.parquet shards")
        return found

    def _local(self, uri: str) -> Path:
        if not storage.is_s3(uri):
            return Path(uri)
        dst = self.cache_dir / uri.removeprefix("s3://")
        if not dst.is_file():
            storage.get_file(uri, dst)
        return dst

    def _footer(self, uri: str) -> pq.FileMetaData:
        path = self._local(uri)
        if not path.is_file():
            raise FileNotFoundError(f"{uri}: shard listed in meta.json does not exist")
        try:
            pf = pq.ParquetFile(path)
        except pa.ArrowException as exc:
            raise ValueError(f"{uri}: not a readable Parquet file: {exc}") from exc
        if "input_ids" not in pf.schema_arrow.names:
            raise ValueError(f"{uri}: no 'input_ids' column (columns: {pf.schema_arrow.names})")
        return pf.metadata

    def _load(self, shard: int) -> np.ndarray:
        """The shard's rows as an (N, seq_len) int64 array, validated."""
        uri = self.shards[shard]
        column = pq.read_table(self._local(uri), columns=["input_ids"]).column("input_ids").combine_chunks()
        lengths = np.diff(column.offsets.to_numpy())
        bad = np.flatnonzero(lengths != self.seq_len)
        if bad.size:
            raise ValueError(
                f"{uri}: row {int(bad[0])} field 'input_ids' has {int(lengths[bad[0]])} tokens, expected seq_len={self.seq_len}"
            )
        rows = column.values.to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, self.seq_len)
        out_of_vocab = np.flatnonzero((rows >= self.vocab_size).any(axis=1) | (rows < 0).any(axis=1))
        if out_of_vocab.size:
            r = int(out_of_vocab[0])
            raise ValueError(
                f"{uri}: row {r} has token id {int(rows[r].max())} outside the model vocab of {self.vocab_size} "
                "(shards packed with a different tokenizer?)"
            )
        return rows

    def __len__(self) -> int:
        return int(self.starts[-1])

    def order(self, epoch: int, seed: int) -> np.ndarray:
        rng = epoch_rng(seed, epoch)
        parts = []
        for shard in rng.permutation(len(self.shards)):
            rows = int(self.rows_per_shard[shard])
            parts.append(self.starts[shard] + epoch_rng(seed, epoch, int(shard)).permutation(rows))
        return np.concatenate(parts)

    def get(self, index: int) -> dict[str, np.ndarray]:
        shard = int(np.searchsorted(self.starts, index, side="right") - 1)
        if self._loaded is None or self._loaded[0] != shard:
            self._loaded = (shard, self._load(shard))
        return {"input_ids": self._loaded[1][index - self.starts[shard]]}
