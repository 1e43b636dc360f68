"""MinHash over code-token shingles: vectorised shingling in numpy, signatures from rensa.

The chain, for a whole batch of documents at once (no Python work per token or per document):

1. tokens: runs of identifier bytes ``[A-Za-z0-9_]`` (+ any non-ASCII byte), ASCII-lower-cased
   (BigCode's code tokenisation, case-insensitive). Documents are joined with a NUL byte, which
   is no token byte, so no token spans two documents;
2. token hashes, from the token's bytes read as 8-byte little-endian words (a strided uint64
   view of the byte buffer, one gather per 8 bytes of token), mixed with the token length: per
   token, not per byte;
3. shingle hashes: ``k`` consecutive token hashes combined polynomially; windows that cross a
   document boundary are dropped;
4. signatures: rensa's ``RMinHash.digest_matrix_from_flat_token_hashes`` over the flat shingle
   array and per-document offsets. Its permutations are the multiply-shift family
   ``(a * x + b) mod 2^64 >> 32`` (a odd, drawn from xoshiro256++ seeded with ``seed``), computed
   in Rust with SIMD.

Why rensa for step 4 and not our numpy: on the same shingles its signature step runs ~10x
faster than a cache-blocked numpy ``(shingles x perms)`` product with per-document minima, and
it computes the same estimator (BENCHMARKS.md ``## data``). Why not rensa's own shingling: it
takes one Python string per shingle, which is what made Python-side pipelines slow.

The same token hashes (and their number/single-char flags) feed the decontamination n-gram check.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np

EMPTY = np.iinfo(np.uint32).max  # every value of the signature of a document without a shingle
_SHINGLE_BASE = np.uint64(0x9E3779B97F4A7C15)
_WORD = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD[_c] = True
_WORD[128:] = True
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A") : ord("Z") + 1] += 32
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[ord("0") : ord("9") + 1] = True
_KEEP_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], dtype=np.uint64)
_MUL = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_PAD = 8  # bytes after the buffer so that an 8-byte read at any token start stays inside it


def _mix(x: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (xor-shift-multiply): spreads every input bit over the output."""
    x ^= x >> np.uint64(31)
    x *= _MIX
    x ^= x >> np.uint64(29)
    return x


def _token_spans(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, hashes) of the tokens of ``raw``, a lower-cased byte buffer followed by
    ``_PAD`` NUL bytes."""
    size = raw.size - _PAD
    word = _WORD[raw[:size]].view(np.int8)
    edges = np.diff(word, prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    # uint64 little-endian words at every byte offset (stride 1): word i = bytes i..i+7
    words = np.ndarray(shape=(size + 1,), dtype="<u8", buffer=raw, strides=(1,))
    length = ends - starts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uint64 arithmetic wraps mod 2^64 by design
        hashes = (words[starts] & _KEEP_LOW_BYTES[np.minimum(length, 8)]) * _MUL
        hashes ^= length.astype(np.uint64)
        # longer tokens fold in their next 8 bytes, 8 at a time, only for the tokens that have them
        longer = np.flatnonzero(length > 8)
        offset = 8
        while longer.size:
            chunk = words[starts[longer] + offset] & _KEEP_LOW_BYTES[np.minimum(length[longer] - offset, 8)]
            hashes[longer] = _mix(hashes[longer] + chunk) * _MUL
            offset += 8
            longer = longer[length[longer] > offset]
        hashes = _mix(hashes)
    return starts, ends, hashes


def _lowered(data: bytes) -> np.ndarray:
    return _LOWER[np.frombuffer(data + b"\0" * _PAD, dtype=np.uint8)]


def token_hashes(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(hashes uint64, trivial bool) for each code token of ``text``, in order; trivial = a number
    or a single character."""
    raw = _lowered(text.encode("utf-8", errors="replace"))
    starts, ends, hashes = _token_spans(raw)
    nondigit = np.concatenate(([0], np.cumsum(~_DIGIT[raw[: raw.size - _PAD]])))
    # "trivial" tokens: numbers and single characters (digit runs and `a b c ...` alphabets are
    # what make n-gram decontamination flag honest code)
    trivial = ((nondigit[ends] - nondigit[starts]) == 0) | ((ends - starts) == 1)
    return hashes, trivial


def ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """One uint64 per window of ``n`` consecutive token hashes (not de-duplicated)."""
    if tokens.size < n:
        return np.empty(0, dtype=np.uint64)
    m = tokens.size - n + 1
    out = np.zeros(m, dtype=np.uint64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(n):
            out = out * _SHINGLE_BASE + tokens[j : j + m]
        out ^= out >> np.uint64(29)
    return out


def shingle_hashes(texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes uint64, offsets int64[len(texts) + 1]): the k-token shingle hashes of every text,
    concatenated in order (text i's are ``hashes[offsets[i]:offsets[i + 1]]``; not de-duplicated,
    which a minimum does not need)."""
    encoded = [t.encode("utf-8", errors="replace") for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    raw = _lowered(b"\0".join(encoded))
    starts, _, tokens = _token_spans(raw)
    text_starts = np.cumsum(lengths + 1) - (lengths + 1)
    token_text = np.searchsorted(text_starts, starts, side="right") - 1
    windows = ngram_hashes(tokens, k)
    first = token_text[: windows.size]
    inside = first == token_text[k - 1 :]  # the window's first and last token are in one text
    counts = np.bincount(first[inside], minlength=len(texts))
    return windows[inside], np.concatenate(([0], np.cumsum(counts)))


class MinHasher:
    """``num_perm`` multiply-shift permutations drawn from ``seed``; 32-bit signature values."""

    def __init__(self, num_perm: int, shingle_size: int, seed: int) -> None:
        self.num_perm, self.shingle_size, self.seed = num_perm, shingle_size, seed

    def shingles(self, text: str) -> np.ndarray:
        """The document's shingle set (sorted unique hashes), e.g. for exact Jaccard."""
        hashes, _ = shingle_hashes([text], self.shingle_size)
        return np.unique(hashes)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """uint32[len(texts), num_perm]; a row of ``EMPTY`` for a text without a shingle (fewer
        than ``shingle_size`` tokens), never an LSH candidate (see dedup)."""
        if not texts:
            return np.empty((0, self.num_perm), dtype=np.uint32)
        from rensa import RMinHash

        hashes, offsets = shingle_hashes(texts, self.shingle_size)
        matrix = RMinHash.digest_matrix_from_flat_token_hashes(
            hashes, offsets.astype(np.uint64), self.num_perm, self.seed
        )
        # rensa 0.5 hands rows back as Python lists only; one fromiter is the cheapest copy
        values = itertools.chain.from_iterable(matrix.to_rows())
        flat = np.fromiter(values, dtype=np.uint32, count=len(texts) * self.num_perm)
        return flat.reshape(len(texts), self.num_perm)

    def signature(self, text: str) -> np.ndarray:
        return self.signatures([text])[0]
