"""The global LSH stage: the confirmed near-duplicate pairs of some (band, range) cells.

The plan step computes each document's rank in id order once (:func:`id_ranks`, from the ``id``
column of every shard; 8 bytes a document) and hands it to every task. A fan-out task
(:func:`confirmed_pairs`) streams over the signature shards reading only the columns of its own
bands. Per band, that band's column (``rows`` values a document, restricted to the task's bucket
ranges): documents whose band shares a 64-bit band hash with another are the candidates; sorted
by (band values, id rank), neighbours with identical values are candidate pairs, so a bucket of
k documents gives the k - 1 pairs of its id-ordered chain (the same pairs for any sharding).

The task then confirms its own candidates: it takes the whole signatures of the paired documents
from the shards' row-major signature files (``dedup.rows_uri``; a local file is memory-mapped,
so only the pages of those rows are read) and keeps a pair when the two agree on at least the
LSH threshold share of values. A pair found by several bands is confirmed by each of their tasks
with the same answer, so the join only takes the union. Which band "owns" a pair cannot be
decided from the signatures alone: two documents may share a lower band's values without being
neighbours in its chain, so skipping such a pair would lose it.

Memory is ~``documents x 8`` bytes for the ranks, ~``documents / band_ranges x (rows x 4 + 16)``
for one band, and ``paired documents x num_perm x 4`` for the confirmation.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from diffucoder.data import io
from diffucoder.data.config import DedupConfig
from diffucoder.data.dedup import band_column, band_values, rows_uri

_BAND_HASH_BASE = np.uint64(0x100000001B3)
_CONFIRM_PAIRS = 16_384  # pairs compared at once: two uint32[_CONFIRM_PAIRS, num_perm] temporaries


def _band_hash(values: np.ndarray) -> np.ndarray:
    """One uint64 per row of band values (equal bands hash equal; collisions only add candidates)."""
    out = np.zeros(len(values), dtype=np.uint64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wraps mod 2^64 by design
        for j in range(values.shape[1]):
            out = out * _BAND_HASH_BASE + values[:, j]
    return out


def _in_ranges(first: np.ndarray, ranges: list[int], band_ranges: int) -> np.ndarray:
    if band_ranges == 1:
        return np.ones(len(first), dtype=bool)
    bucket = (first.astype(np.uint64) * np.uint64(band_ranges)) >> np.uint64(32)
    return np.isin(bucket, np.asarray(ranges, dtype=np.uint64))


def id_ranks(shards: list[str]) -> np.ndarray:
    """Each document's rank in id order (global index -> rank)."""
    tables = [io.read_table(uri, columns=["id"]) for uri in shards]
    ids = pa.concat_tables(tables).column("id") if tables else pa.chunked_array([], pa.string())
    order = pc.sort_indices(ids).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _band_pairs(
    shards: list[str], band: int, ranges: list[int], rank: np.ndarray, cfg: DedupConfig
) -> np.ndarray:
    """One band: candidate pairs (global indices) of the id-ordered bucket chains."""
    indices, values = [], []
    offset = 0
    for uri in shards:
        column = io.read_table(uri, columns=[band_column(band)]).column(0)
        vals, valid = band_values(column, cfg.rows)
        keep = valid & _in_ranges(vals[:, 0], ranges, cfg.band_ranges)
        indices.append(np.flatnonzero(keep) + offset)
        values.append(vals[keep])
        offset += len(column)
    index = np.concatenate(indices) if indices else np.empty(0, dtype=np.int64)
    keys = np.concatenate(values) if values else np.empty((0, cfg.rows), dtype=np.uint32)
    hashed = _band_hash(keys)
    order = np.argsort(hashed)
    same = hashed[order][1:] == hashed[order][:-1]
    shared = np.zeros(len(order), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    cand = order[shared]  # rows whose band hash occurs twice or more: the only possible candidates
    index, keys = index[cand], keys[cand]
    chain = np.lexsort((rank[index], *keys.T[::-1]))
    equal = np.all(keys[chain][1:] == keys[chain][:-1], axis=1)
    return np.stack([index[chain][:-1][equal], index[chain][1:][equal]], axis=1)


def _agreements(shards: list[str], pairs: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """How many of the ``num_perm`` signature values each pair shares, from the row files."""
    members, pos = np.unique(pairs, return_inverse=True)
    pos = pos.reshape(pairs.shape)
    values = np.empty((len(members), cfg.num_perm), dtype=np.uint32)
    offset = done = 0
    for uri in shards:
        try:
            rows = io.read_array(rows_uri(uri))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"dedup: {rows_uri(uri)} is missing: a signature shard needs its row-major file; "
                "rerun the filter step for that shard (remove its stats/shard-NNNNN.json)"
            ) from None
        if rows.ndim != 2 or rows.shape[1] != cfg.num_perm:
            raise ValueError(
                f"dedup: {rows_uri(uri)} holds signatures of shape {rows.shape}, not (n, {cfg.num_perm}): "
                "rerun the filter step for this shard with the same data.dedup config"
            )
        end = done + int(np.searchsorted(members[done:], offset + len(rows)))
        values[done:end] = rows[members[done:end] - offset]
        done, offset = end, offset + len(rows)
    agree = np.empty(len(pairs), dtype=np.int64)
    for first in range(0, len(pairs), _CONFIRM_PAIRS):
        block = pos[first : first + _CONFIRM_PAIRS]
        agree[first : first + len(block)] = np.count_nonzero(
            values[block[:, 0]] == values[block[:, 1]], axis=1
        )
    return agree


def candidate_pairs(
    shards: list[str], cells: list[list[int]], cfg: DedupConfig, *, rank: np.ndarray
) -> np.ndarray:
    """int64[m, 2]: the candidate pairs (global indices, a < b, unique) of ``cells``; ``rank`` is
    :func:`id_ranks` of ``shards``."""
    ranges_of: dict[int, list[int]] = defaultdict(list)
    for band, part in cells:
        ranges_of[band].append(part)
    found = [_band_pairs(shards, band, ranges, rank, cfg) for band, ranges in ranges_of.items()]
    return np.unique(np.sort(np.concatenate([np.empty((0, 2), dtype=np.int64), *found]), axis=1), axis=0)


def confirm(shards: list[str], pairs: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """The pairs (int64[m, 2]) whose signatures agree on >= the threshold share of values."""
    if not len(pairs):
        return pairs
    return pairs[_agreements(shards, pairs, cfg) / cfg.num_perm >= cfg.threshold]


def confirmed_pairs(
    shards: list[str], cells: list[list[int]], cfg: DedupConfig, *, rank: np.ndarray
) -> np.ndarray:
    """int64[m, 2]: the confirmed pairs of ``cells`` (global indices, a < b, unique)."""
    return confirm(shards, candidate_pairs(shards, cells, cfg, rank=rank), cfg)
