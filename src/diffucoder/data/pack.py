"""Packing for stages 1-2: tokenise filtered text shards into fixed-length `input_ids` rows.

Documents are read in shard-name then row order, each tokenised without special tokens and
followed by ``<|endoftext|>``; the concatenated stream is cut into rows of exactly ``seq_len``
tokens (format in docs/interfaces.md). The tail shorter than one row is dropped and counted in
meta.json: padding it would put pad tokens into an unconditional pre-training objective. Output is
a pure function of (shards, tokenizer, seq_len), so reruns are byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from diffucoder.data import io

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PACK_SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32()))])
_ENCODE_BATCH = 256


def _texts(shard_uris: list[str]) -> Iterator[list[str]]:
    for uri in shard_uris:
        texts = io.read_table(uri, columns=["text"]).column("text").to_pylist()
        for i in range(0, len(texts), _ENCODE_BATCH):
            yield [t for t in texts[i : i + _ENCODE_BATCH] if t]


def _encode(tok: PreTrainedTokenizerFast, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens: what ``tok(texts, add_special_tokens=False)`` gives
    (tests/data/test_corpus_pack.py), straight from the Rust tokenizer without the character offsets
    and attention masks the transformers call builds and packing never reads (~20 % faster)."""
    return [e.ids for e in tok.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def pack_shards(
    shard_uris: list[str], tokenizer_uri: str, seq_len: int, out_uri: str, rows_per_shard: int = 4096
) -> dict:
    """Write packed `shard-NNNNN.parquet` + meta.json under ``out_uri``; returns the meta."""
    from diffucoder.data.tokenizer import load_tokenizer

    if not shard_uris:
        raise ValueError(f"pack: no input shards for {out_uri}")
    tok = load_tokenizer(tokenizer_uri)
    eos = tok.eos_token_id
    if eos is None:
        raise ValueError(f"pack: tokenizer {tokenizer_uri} has no eos token")
    buffer = np.empty(0, dtype=np.int32)
    rows: list[np.ndarray] = []
    shards: list[str] = []
    n_docs = n_tokens = n_rows = 0
    with io.output_dir(out_uri) as out:

        def flush() -> None:
            nonlocal rows
            shards.append(io.shard_name(len(shards)))
            # one flat int32 buffer and its row offsets: no Python int per token
            offsets = pa.array(np.arange(0, len(rows) * seq_len + 1, seq_len, dtype=np.int32))
            column = pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(rows)))
            io.write_table(str(out / shards[-1]), pa.table({"input_ids": column}, schema=PACK_SCHEMA))
            rows = []

        for texts in _texts(shard_uris):
            encoded = _encode(tok, texts)
            pieces = [buffer]
            for ids in encoded:
                pieces.append(np.asarray(ids + [eos], dtype=np.int32))
                n_tokens += len(ids) + 1
            n_docs += len(encoded)
            buffer = np.concatenate(pieces)
            full = len(buffer) // seq_len
            for r in range(full):
                rows.append(buffer[r * seq_len : (r + 1) * seq_len])
                n_rows += 1
                if len(rows) == rows_per_shard:
                    flush()
            buffer = buffer[full * seq_len :].copy()
        if rows:
            flush()
        if n_rows == 0:
            raise ValueError(
                f"pack: {n_tokens} tokens from {len(shard_uris)} shards do not fill one row of {seq_len}"
            )
        meta = {
            "seq_len": seq_len,
            "tokenizer": tokenizer_uri,
            "vocab_size": len(tok),
            "eos_token_id": eos,
            "documents": n_docs,
            "tokens": n_tokens,
            "rows": n_rows,
            "dropped_tail_tokens": int(len(buffer)),
            "shards": shards,
            "inputs": list(shard_uris),
        }
        io.write_json(str(out / "meta.json"), meta)
    return meta
