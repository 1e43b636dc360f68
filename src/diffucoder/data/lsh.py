"""One task of the global LSH stage: the confirmed near-duplicate pairs of some (band, range) cells.

Two passes over the signature shards, holding little of them:

1. per band, the band column of every shard (``rows`` values per document, restricted to the
   task's bucket ranges) -> the documents whose band shares a 64-bit band hash with another
   document: the only ones that can be candidates;
2. for those documents only: id and full signature (all band columns of their shards).

Then per band: the candidates sorted by (band values, id); neighbours with identical values are
candidate pairs, so a bucket of k documents gives the k - 1 pairs of its id-ordered chain (the
same pairs for any sharding). A pair is kept when the full signatures agree on at least the LSH
threshold share of values.

Memory is ~``documents / band_ranges x (rows x 4 + 16)`` bytes per band plus ``candidates x
num_perm x 4``: a task of one (band, range) cell holds 1/(bands x band_ranges) of the band data.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np

from diffucoder.data import io
from diffucoder.data.config import DedupConfig
from diffucoder.data.dedup import band_column, band_values

_BAND_HASH_BASE = np.uint64(0x100000001B3)
_CONFIRM_CHUNK = 1 << 16  # pairs compared at once: (chunk x num_perm) booleans


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


def _band_candidates(shards: list[str], band: int, ranges: list[int], cfg: DedupConfig) -> np.ndarray:
    """Pass 1: sorted global indices of the documents in ``ranges`` of ``band`` whose band hash
    occurs more than once."""
    indices, hashes = [], []
    offset = 0
    for uri in shards:
        column = io.read_table(uri, columns=[band_column(band)]).column(0)
        values, valid = band_values(column, cfg.rows)
        keep = valid & _in_ranges(values[:, 0], ranges, cfg.band_ranges)
        indices.append(np.flatnonzero(keep) + offset)
        hashes.append(_band_hash(values[keep]))
        offset += len(column)
    index = np.concatenate(indices) if indices else np.empty(0, dtype=np.int64)
    hashed = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
    order = np.argsort(hashed, kind="stable")
    same = hashed[order][1:] == hashed[order][:-1]
    shared = np.zeros(len(order), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    return np.sort(index[order[shared]])


def _fetch(shards: list[str], members: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pass 2: (id rank among ``members``, signatures uint32[len(members), num_perm])."""
    columns = ["id"] + [band_column(b) for b in range(cfg.bands)]
    ids: list[str] = []
    sigs = np.empty((len(members), cfg.num_perm), dtype=np.uint32)
    offset = done = 0
    for uri in shards:
        if done == len(members):
            break
        table = io.read_table(uri, columns=columns)
        local = members[done:][members[done:] < offset + table.num_rows] - offset
        offset += table.num_rows
        if not local.size:
            continue
        picked = table.take(local)
        ids += picked.column("id").to_pylist()
        for b in range(cfg.bands):
            values, _ = band_values(picked.column(band_column(b)), cfg.rows)
            sigs[done : done + local.size, b * cfg.rows : (b + 1) * cfg.rows] = values
        done += local.size
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(np.asarray(ids, dtype=object), kind="stable")] = np.arange(len(ids))
    return rank, sigs


def _chain_pairs(keys: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (a, b) of neighbours with identical keys, in (keys, rank) order."""
    order = np.lexsort((rank, *keys.T[::-1]))
    same = np.all(keys[order][1:] == keys[order][:-1], axis=1)
    return order[:-1][same], order[1:][same]


def _agreement(sigs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float64)
    for i in range(0, len(a), _CONFIRM_CHUNK):
        out[i : i + _CONFIRM_CHUNK] = np.mean(
            sigs[a[i : i + _CONFIRM_CHUNK]] == sigs[b[i : i + _CONFIRM_CHUNK]], axis=1
        )
    return out


def band_pairs(shards: list[str], cells: list[list[int]], cfg: DedupConfig) -> np.ndarray:
    """int64[m, 2]: the confirmed pairs (global indices, a < b, unique) of ``cells``."""
    ranges_of: dict[int, list[int]] = defaultdict(list)
    for band, part in cells:
        ranges_of[band].append(part)
    candidates = {band: _band_candidates(shards, band, ranges, cfg) for band, ranges in ranges_of.items()}
    members = np.unique(np.concatenate([np.empty(0, dtype=np.int64), *candidates.values()]))
    if not members.size:
        return np.empty((0, 2), dtype=np.int64)
    rank, sigs = _fetch(shards, members, cfg)
    found = []
    for band, cand in candidates.items():
        pos = np.searchsorted(members, cand)
        keys = sigs[pos, band * cfg.rows : (band + 1) * cfg.rows]
        a, b = _chain_pairs(keys, rank[pos])
        found.append(np.stack([pos[a], pos[b]], axis=1))
    local = np.unique(np.sort(np.concatenate(found), axis=1), axis=0)
    confirmed = local[_agreement(sigs, local[:, 0], local[:, 1]) >= cfg.threshold]
    return members[confirmed]
