"""Per-document signals the filter rules read, computed lazily and at most once per document.

Why line/regex signals and not ``ast``: building Python AST objects runs at ~1 MB/s/core on our
machines, below the 5 MB/s/core the filter stage must sustain; the syntax rule parses with
``symtable`` (no Python AST objects, no bytecode), and the structure counts RefineCode uses (defs,
imports, returns, assignments) are line-shaped anyway (OpenCoder's opc_data_filtering itself counts
substrings per line).
Approximations are stated where they are made.
"""

from __future__ import annotations

import re
import string
import warnings
from functools import cached_property

import numpy as np

_TRIPLE = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'')
_LINE_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_LETTERS = string.ascii_letters.encode()
_DIGITS = string.digits.encode()
_BASE64_CHARS = (string.ascii_letters + string.digits + "+/\n=").encode()
# bytes of base64 text -> "x", every other byte -> " " (so runs split on whitespace)
_BASE64_RUNS = bytes(ord("x") if b in _BASE64_CHARS else ord(" ") for b in range(256))


class CodeFile:
    """A document's text plus cached signals (lines, words, strings, comment chars, n-grams)."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.text: str = doc["text"]
        self.lang: str | None = doc.get("lang")

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def code_lines(self) -> list[str]:
        """Non-empty lines with surrounding whitespace removed."""
        return [s for s in (line.strip() for line in self.lines) if s]

    @cached_property
    def n_code_lines(self) -> int:
        return max(1, len(self.code_lines))

    @cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @cached_property
    def nonspace_chars(self) -> int:
        return len("".join(self.words))

    @cached_property
    def _bytes(self) -> bytes:
        return self.text.encode("utf-8")

    @cached_property
    def ascii_letters(self) -> int:
        """ASCII letters (bytes.translate is ~50x faster than str.isalpha per char; code is mostly ASCII)."""
        return len(self._bytes) - len(self._bytes.translate(None, _LETTERS))

    @cached_property
    def ascii_digits(self) -> int:
        return len(self._bytes) - len(self._bytes.translate(None, _DIGITS))

    @cached_property
    def base64_runs(self) -> list[bytes]:
        """The maximal runs of base64 characters ``[A-Za-z0-9+/\\n=]`` (as placeholder bytes)."""
        return self._bytes.translate(_BASE64_RUNS).split()

    @cached_property
    def triple_quoted(self) -> list[str]:
        return _TRIPLE.findall(self.text)

    @cached_property
    def comment_chars(self) -> int:
        """Full-line ``#`` comments plus triple-quoted strings (docstrings); inline comments are not counted."""
        hashes = sum(len(s) for s in self.code_lines if s.startswith("#"))
        return hashes + sum(len(s) for s in self.triple_quoted)

    @cached_property
    def long_string_lines(self) -> int:
        """Lines holding a single-line string literal of more than 20 words. 21 words need 20
        whitespace separators, so a printable line (whose only whitespace is " ") with fewer
        than 20 spaces is skipped without scanning it for literals."""
        hits = 0
        for line in self.lines:
            if ('"' in line or "'" in line) and (line.count(" ") >= 20 or not line.isprintable()):
                hits += any(len(s.split()) > 20 for s in _LINE_STRING.findall(line))
        return hits

    @cached_property
    def string_literals(self) -> list[str]:
        """Triple-quoted strings plus single-line literals outside them (quotes included)."""
        without = _TRIPLE.sub(" ", self.text) if self.triple_quoted else self.text
        single = _LINE_STRING.findall(without) if ('"' in without or "'" in without) else []
        return self.triple_quoted + single

    @cached_property
    def code_part(self) -> str:
        """Text with comments and string literals removed (for the hex-literal signal)."""
        without = _TRIPLE.sub(" ", self.text)
        return "\n".join(_LINE_STRING.sub(" ", line.split("#", 1)[0]) for line in without.splitlines())

    @cached_property
    def lower_code_lines(self) -> list[str]:
        return [s.lower() for s in self.code_lines]

    def lines_containing(self, needle: str, lower: bool = True) -> int:
        """Code lines containing ``needle`` as a plain substring (RefineCode semantics: 'password' counts)."""
        lines = self.lower_code_lines if lower else self.code_lines
        return sum(needle in s for s in lines)

    @cached_property
    def word_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, lengths): each word's ``hash()`` as its id (equal words, equal ids; a collision
        of two words in one file is a 2^-64 event), and its char length."""
        n = len(self.words)
        ids = np.fromiter(map(hash, self.words), dtype=np.int64, count=n)
        lengths = np.fromiter(map(len, self.words), dtype=np.int64, count=n)
        return ids, lengths

    def ngram_keys(self, n: int) -> np.ndarray:
        """One uint64 key per word n-gram (polynomial hash of word ids; collisions are
        negligible), built from the (n-1)-gram keys: every n costs one pass, not n."""
        cache = self.__dict__.setdefault("_ngram_keys", {})
        if n not in cache:
            ids, _ = self.word_ids
            if n == 1 or len(ids) < n:
                cache[n] = ids.view(np.uint64) if len(ids) >= n else np.empty(0, dtype=np.uint64)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # uint64 overflow wraps, as intended
                    cache[n] = self.ngram_keys(n - 1)[:-1] * np.uint64(1_000_003) + ids[n - 1 :].view(
                        np.uint64
                    )
        return cache[n]

    def _ngram_runs(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, run starts, run counts): n-gram positions sorted by key, where each run of
        equal n-grams starts in ``order``, and its size."""
        keys = self.ngram_keys(n)
        order = np.argsort(keys)
        ordered = keys[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        counts = np.diff(np.append(starts, len(keys)))
        return order, starts, counts

    def top_ngram_char_fraction(self, n: int) -> float:
        """Share of word chars taken by the most frequent word n-gram (RedPajama-style; among
        equally frequent n-grams, the one that occurs first, as ``Counter.most_common``)."""
        if len(self.ngram_keys(n)) == 0 or self.nonspace_chars == 0:
            return 0.0
        order, starts, counts = self._ngram_runs(n)
        top = counts.max()
        if top < 2:
            return 0.0
        first = int(np.minimum.reduceat(order, starts)[counts == top].min())
        _, lengths = self.word_ids
        return float(top * lengths[first : first + n].sum()) / self.nonspace_chars

    def duplicate_ngram_char_fraction(self, n: int) -> float:
        """Share of word chars covered by n-grams that occur more than once."""
        if len(self.ngram_keys(n)) == 0 or self.nonspace_chars == 0:
            return 0.0
        order, starts, counts = self._ngram_runs(n)
        repeated = order[np.repeat(counts > 1, counts)]  # positions of n-grams seen twice or more
        # mark words i..i+n-1 for every such start i, with a difference array
        words = len(self.words)
        delta = (
            np.bincount(repeated, minlength=words + 1)
            - np.bincount(repeated + n, minlength=words + n + 1)[: words + 1]
        )
        covered = np.cumsum(delta[:-1]) > 0
        _, lengths = self.word_ids
        return float(lengths[covered].sum()) / self.nonspace_chars
