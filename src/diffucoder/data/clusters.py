"""The join of the global dedup stage: clusters from ids, sha256s and the LSH tasks' confirmed pairs.

It reads two string columns per shard and the pair files, no signature: each LSH task confirmed
its own pairs (:func:`diffucoder.data.lsh.confirmed_pairs`). Clusters are connected components
over exact-hash groups and confirmed near-duplicate pairs, computed with array operations
(``min_labels``) rather than a per-edge Python union-find, so a corpus of millions of documents
joins in seconds. One document per cluster is kept: the smallest id.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from diffucoder.data import io
from diffucoder.data.config import DedupConfig


def min_labels(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """label[i] = the smallest node of i's connected component in the graph with edges (u, v).

    Hook-and-compress: every edge hooks the larger of its two roots under the smaller one, then
    pointer jumping flattens every tree; repeated until both ends of every edge share a root.
    Labels only ever point to smaller nodes of the same component, so each component's root is
    its smallest node.
    """
    label = np.arange(n, dtype=np.int64)
    while u.size:
        lu, lv = label[u], label[v]
        differ = lu != lv
        if not differ.any():
            break
        lu, lv = lu[differ], lv[differ]
        low = np.minimum(lu, lv)
        np.minimum.at(label, np.maximum(lu, lv), low)
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
    return label


def _load(shards: list[str]) -> tuple[pa.Array, pa.Array]:
    tables = [io.read_table(uri, columns=["id", "sha256"]) for uri in shards]
    if not tables:
        return pa.array([], pa.string()), pa.array([], pa.string())
    table = pa.concat_tables(tables)
    return table.column("id").combine_chunks(), table.column("sha256").combine_chunks()


def _check_unique(ids: pa.Array) -> None:
    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        dup = repeated.field("values")[0].as_py()
        raise ValueError(f"dedup: document id {dup!r} occurs in more than one row; ids must be unique")


def _exact_edges(shas: pa.Array, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (in rank space) chaining each group of identical sha256s in rank order."""
    codes = pc.dictionary_encode(shas).indices.to_numpy()
    order = np.lexsort((rank, codes))
    same = codes[order][1:] == codes[order][:-1]
    return rank[order][:-1][same], rank[order][1:][same]


def _union(pair_blocks: list[np.ndarray], n: int) -> np.ndarray:
    """The distinct pairs of all blocks, sorted (one int64 key a pair: a 1-D unique, not a row sort)."""
    pairs = np.concatenate([np.empty((0, 2), dtype=np.int64), *pair_blocks]).astype(np.int64)
    keys = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([keys // max(n, 1), keys % max(n, 1)], axis=1)


def find_clusters(shards: list[str], pair_blocks: list[np.ndarray], cfg: DedupConfig) -> dict:
    """Which ids to drop (each with its reason and the id kept), and cluster statistics.

    ``pair_blocks`` are the LSH tasks' confirmed pairs (global indices; a pair found by several
    tasks counts once).
    """
    ids, shas = _load(shards)
    _check_unique(ids)
    n = len(ids)
    by_id = pc.sort_indices(ids).to_numpy()  # rank -> global index
    rank = np.empty(n, dtype=np.int64)
    rank[by_id] = np.arange(n)
    eu = ev = np.empty(0, dtype=np.int64)
    if cfg.exact:
        eu, ev = _exact_edges(shas, rank)
    pairs = _union(pair_blocks, n) if cfg.near else np.empty((0, 2), dtype=np.int64)
    label = min_labels(n, np.concatenate([eu, rank[pairs[:, 0]]]), np.concatenate([ev, rank[pairs[:, 1]]]))
    sizes = np.bincount(label, minlength=n)
    dropped = np.flatnonzero(label != np.arange(n))  # ranks, so in id order
    kept_global = by_id[label[dropped]]
    dropped_global = by_id[dropped]
    same_sha = pc.equal(shas.take(pa.array(dropped_global)), shas.take(pa.array(kept_global)))
    exact = same_sha.to_numpy(zero_copy_only=False) & cfg.exact
    removed = {
        doc: {"reason": "exact_duplicate" if is_exact else "near_duplicate", "kept": kept}
        for doc, kept, is_exact in zip(
            ids.take(pa.array(dropped_global)).to_pylist(),
            ids.take(pa.array(kept_global)).to_pylist(),
            exact.tolist(),
            strict=True,
        )
    }
    clustered = sizes[sizes > 1]
    return {
        "bands": cfg.bands,
        "rows": cfg.rows,
        "num_perm": cfg.num_perm,
        "threshold": round(cfg.threshold, 4),
        "documents": n,
        "exact_duplicate_docs": int(exact.sum()),
        "exact_unions": len(eu),
        "near_pairs": len(pairs),
        "near_duplicate_docs": int(len(dropped) - exact.sum()),
        "clusters": len(clustered),
        "largest_cluster": int(clustered.max(initial=0)),
        "removed": removed,
    }
