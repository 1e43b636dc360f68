"""Exact (sha256) + MinHash LSH near-dedup, staged so no step holds the corpus text and the global
stage fans out (datatrove's MinHash design, our implementation).

1. ``write_signature_shard`` (per shard, in the filter fan-out): a Parquet file of id, sha256 and
   one column per LSH band holding that band's ``rows`` signature values (null for a document
   without a shingle), so a later task reads only the bands it needs; and the same signatures
   row-major in a ``.npy`` file (``rows_uri``), so a task can take a few documents' whole
   signatures without reading every band column.
2. ``plan`` (one light task): the signature shards in a fixed order (a document's global index is
   its position in that order) and the (band, bucket range) cells split among ``lsh_tasks``
   tasks; a document falls in bucket range ``first value of its band * band_ranges >> 32``.
   The same step computes every document's rank in id order once (``lsh.id_ranks``).
3. ``lsh.confirmed_pairs`` (fan-out, one task per cell group): documents whose band values are
   identical are candidates, chained in id order (from its bands' columns only); the task
   confirms its own candidates (the whole signatures, from the row files, agree on >= the LSH
   threshold share of values; drops LSH false positives).
4. ``clusters.find_clusters`` (one light task: ids, sha256s and pairs): union-find over
   exact-hash groups and the union of the tasks' confirmed pairs; one document per cluster is
   kept, the smallest id -- a choice that depends on neither the shard layout nor the number of
   tasks.

Every cell's pairs are the same whichever task computes them, so the result is the same for any
``lsh_tasks`` and ``band_ranges`` (tests). The threshold (1/b)^(1/r) is printed by
``diffucoder data dedup``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from diffucoder.data import io
from diffucoder.data.config import DedupConfig
from diffucoder.data.minhash import EMPTY, MinHasher


def band_column(band: int) -> str:
    return f"band_{band:03d}"


def rows_uri(shard_uri: str) -> str:
    """The row-major signature file beside a signature shard (``shard-NNNNN.parquet`` -> ``.npy``)."""
    return shard_uri.removesuffix(".parquet") + ".npy"


def signature_table(docs: list[dict], sigs: np.ndarray, cfg: DedupConfig) -> pa.Table:
    """The band columns of one shard's signatures (``sigs``: uint32[len(docs), num_perm]).
    Documents with fewer than ``shingle_size`` tokens get null bands and take part in exact
    dedup only."""
    width = 4 * cfg.rows
    has_shingles = (sigs != EMPTY).any(axis=1)
    validity = None if has_shingles.all() else pa.array(has_shingles).buffers()[1]
    columns: dict[str, pa.Array] = {
        "id": pa.array([d["id"] for d in docs], type=pa.string()),
        "sha256": pa.array([d["sha256"] for d in docs], type=pa.string()),
    }
    for band in range(cfg.bands):
        values = np.ascontiguousarray(sigs[:, band * cfg.rows : (band + 1) * cfg.rows])
        columns[band_column(band)] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), len(docs), [validity, pa.py_buffer(values.tobytes())]
        )
    return pa.table(columns)


def write_signature_shard(
    uri: str, docs: list[dict], cfg: DedupConfig, sigs: np.ndarray | None = None
) -> None:
    """Stage 1 for one shard: the band columns at ``uri`` and the same signatures row-major at
    ``rows_uri(uri)`` (written first, so a shard's Parquet file implies its rows). ``sigs``
    defaults to our MinHash of the texts."""
    if sigs is None:
        sigs = MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed).signatures([d["text"] for d in docs])
    io.write_array(rows_uri(uri), np.ascontiguousarray(sigs, dtype=np.uint32))
    io.write_table(uri, signature_table(docs, sigs, cfg))


def band_values(column: pa.ChunkedArray | pa.Array, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(values uint32[n, rows], valid bool[n]) of one band column (zero-copy where possible)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(array)
    data = np.frombuffer(array.buffers()[1], dtype=np.uint32, count=(array.offset + n) * rows)
    values = data[array.offset * rows :].reshape(n, rows)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return values, valid


def plan(sig_uris: list[str], cfg: DedupConfig) -> dict:
    """The global stage's tasks: each a contiguous run of (band, bucket range) cells."""
    cells = [[band, part] for band in range(cfg.bands) for part in range(cfg.band_ranges)]
    width = min(cfg.lsh_tasks, len(cells))
    tasks = [cells[t * len(cells) // width : (t + 1) * len(cells) // width] for t in range(width)]
    return {"shards": list(sig_uris), "tasks": tasks, "dedup": cfg.model_dump(mode="json")}


def find_duplicates(sig_uris: list[str], cfg: DedupConfig) -> dict:
    """Stages 2-4 in this process, one task after the other (tests, `diffucoder data dedup`)."""
    from diffucoder.data.clusters import find_clusters
    from diffucoder.data.lsh import confirmed_pairs, id_ranks

    p = plan(sig_uris, cfg)
    rank = id_ranks(p["shards"])
    pairs = [confirmed_pairs(p["shards"], cells, cfg, rank=rank) for cells in p["tasks"]]
    return find_clusters(p["shards"], pairs, cfg)
