"""Exact (sha256) + MinHash LSH near-dedup, staged so no step holds the corpus text and the global
stage fans out (datatrove's MinHash design, our implementation).

1. ``signature_table`` (per shard, in the filter fan-out): id, sha256 and one column per LSH band
   holding that band's ``rows`` signature values (null for a document without a shingle), so a
   later task reads only the bands it needs.
2. ``plan`` (one light task): the signature shards in a fixed order (a document's global index is
   its position in that order) and the (band, bucket range) cells split among ``lsh_tasks``
   tasks; a document falls in bucket range ``first value of its band * band_ranges >> 32``.
   The same step computes every document's rank in id order once (``lsh.id_ranks``).
3. ``lsh.candidate_pairs`` (fan-out, one task per cell group, reading only its bands' columns):
   documents whose band values are identical are candidates, chained in id order.
4. ``clusters.find_clusters`` (one task): the union of every task's candidates is confirmed once
   (the full signatures agree on >= the LSH threshold share of values; drops LSH false
   positives), then union-find over exact-hash groups and the confirmed pairs; one document per
   cluster is kept, the smallest id -- a choice that depends on neither the shard layout nor the
   number of tasks.

Every cell's pairs are the same whichever task computes them, so the result is the same for any
``lsh_tasks`` and ``band_ranges`` (tests). The threshold (1/b)^(1/r) is printed by
``diffucoder data dedup``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from diffucoder.data.config import DedupConfig
from diffucoder.data.minhash import EMPTY, MinHasher


def band_column(band: int) -> str:
    return f"band_{band:03d}"


def signature_table(docs: list[dict], cfg: DedupConfig) -> pa.Table:
    """Stage 1 for one shard. Documents with fewer than ``shingle_size`` tokens get null bands
    and take part in exact dedup only."""
    sigs = MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed).signatures([d["text"] for d in docs])
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
    from diffucoder.data.lsh import candidate_pairs, id_ranks

    p = plan(sig_uris, cfg)
    rank = id_ranks(p["shards"])
    pairs = [candidate_pairs(p["shards"], cells, cfg, rank=rank) for cells in p["tasks"]]
    return find_clusters(p["shards"], pairs, cfg)
