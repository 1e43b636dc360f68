"""Exact (sha256) + MinHash LSH near-dedup, staged so no step holds the corpus text.

Stages (datatrove's MinHash design, our implementation):

1. ``signature_table`` (per shard): id, sha256 and the MinHash signature of every document.
2. ``candidate_pairs`` (global, one band at a time): documents whose band of ``rows`` signature
   values is identical are candidates; only (n_docs x rows) values are held per band. Each
   candidate pair is confirmed when the signatures agree on >= the LSH threshold share of values
   (drops LSH false positives, so distinct files are kept).
3. ``clusters`` (global): union-find over exact-hash groups and confirmed pairs.
4. keep one per cluster: the smallest document id -- a choice that depends on neither the shard
   layout nor the worker count. ``removed`` maps each dropped id to (reason, kept id).

The threshold (1/b)^(1/r) implied by (bands, rows) is printed by ``diffucoder data dedup``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa

from diffucoder.data import io
from diffucoder.data.config import DedupConfig
from diffucoder.data.minhash import MinHasher

EMPTY = np.iinfo(np.uint32).max


def signature_table(docs: list[dict], cfg: DedupConfig) -> pa.Table:
    """Stage 1 for one shard. Documents with fewer than ``shingle_size`` tokens get an empty
    signature (all 0xFFFFFFFF) and take part in exact dedup only."""
    hasher = MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed)
    sigs = (
        np.stack([hasher.signature(d["text"]) for d in docs])
        if docs
        else np.empty((0, cfg.num_perm), np.uint32)
    )
    return pa.table(
        {
            "id": [d["id"] for d in docs],
            "sha256": [d["sha256"] for d in docs],
            "signature": pa.array([row.tobytes() for row in sigs], type=pa.binary(4 * cfg.num_perm)),
        }
    )


class UnionFind:
    """Disjoint sets over dense integer ids, union by smaller root (so roots are deterministic)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _load(sig_uris: list[str], num_perm: int) -> tuple[list[str], list[str], np.ndarray]:
    ids: list[str] = []
    shas: list[str] = []
    blocks = []
    for uri in sig_uris:
        table = io.read_table(uri)
        ids += table.column("id").to_pylist()
        shas += table.column("sha256").to_pylist()
        raw = b"".join(table.column("signature").to_pylist())
        blocks.append(np.frombuffer(raw, dtype=np.uint32).reshape(-1, num_perm))
    sigs = np.concatenate(blocks) if blocks else np.empty((0, num_perm), np.uint32)
    return ids, shas, sigs


def candidate_pairs(sigs: np.ndarray, cfg: DedupConfig) -> set[tuple[int, int]]:
    """Stage 2: confirmed near-duplicate pairs (i < j) found band by band."""
    pairs: set[tuple[int, int]] = set()
    usable = np.flatnonzero(sigs[:, 0] != EMPTY) if len(sigs) else np.empty(0, dtype=np.int64)
    for band in range(cfg.bands):
        cols = sigs[usable, band * cfg.rows : (band + 1) * cfg.rows]
        if cols.size == 0:
            continue
        # group identical band rows: sort them, then compare neighbours
        keys = np.ascontiguousarray(cols).view(np.dtype((np.void, cols.dtype.itemsize * cfg.rows))).ravel()
        order = np.argsort(keys, kind="stable")
        same = keys[order][1:] == keys[order][:-1]
        for pos in np.flatnonzero(same):
            a, b = int(usable[order[pos]]), int(usable[order[pos + 1]])
            pairs.add((min(a, b), max(a, b)))
    threshold = cfg.threshold
    return {(a, b) for a, b in pairs if float(np.mean(sigs[a] == sigs[b])) >= threshold}


def find_duplicates(sig_uris: list[str], cfg: DedupConfig) -> dict:
    """Stages 2-4 over all shards' signature tables: which ids to drop, and cluster statistics."""
    ids, shas, sigs = _load(sig_uris, cfg.num_perm)
    order = sorted(range(len(ids)), key=ids.__getitem__)  # dense index by id order -> min root = min id
    rank = {old: new for new, old in enumerate(order)}
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"dedup: document id {dup!r} occurs in more than one row; ids must be unique")
    uf = UnionFind(len(ids))
    exact_groups: dict[str, list[int]] = defaultdict(list)
    if cfg.exact:
        for i, sha in enumerate(shas):
            exact_groups[sha].append(rank[i])
        for members in exact_groups.values():
            for m in members[1:]:
                uf.union(members[0], m)
    n_exact_unions = sum(len(m) - 1 for m in exact_groups.values())
    near_pairs = candidate_pairs(sigs, cfg) if cfg.near else set()
    for a, b in near_pairs:
        uf.union(rank[a], rank[b])
    clusters: dict[int, list[int]] = defaultdict(list)
    for r in range(len(ids)):
        clusters[uf.find(r)].append(r)
    removed: dict[str, dict] = {}
    sizes = []
    for root, members in clusters.items():
        if len(members) < 2:
            continue
        sizes.append(len(members))
        kept = ids[order[root]]
        kept_sha = shas[order[root]]
        for m in members:
            if m != root:
                doc = order[m]
                reason = "exact_duplicate" if shas[doc] == kept_sha and cfg.exact else "near_duplicate"
                removed[ids[doc]] = {"reason": reason, "kept": kept}
    return {
        "bands": cfg.bands,
        "rows": cfg.rows,
        "num_perm": cfg.num_perm,
        "threshold": round(cfg.threshold, 4),
        "documents": len(ids),
        "exact_duplicate_docs": sum(1 for r in removed.values() if r["reason"] == "exact_duplicate"),
        "exact_unions": n_exact_unions,
        "near_pairs": len(near_pairs),
        "near_duplicate_docs": sum(1 for r in removed.values() if r["reason"] == "near_duplicate"),
        "clusters": len(sizes),
        "largest_cluster": max(sizes, default=0),
        "removed": dict(sorted(removed.items())),
    }
