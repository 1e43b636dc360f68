"""Per-document signals the filter rules read, computed lazily and at most once per document.

Why line/regex signals and not ``ast``: building Python AST objects runs at ~1 MB/s/core on our
machines, below the 5 MB/s/core the filter stage must sustain; ``compile()`` to bytecode checks
syntax ~4x faster, and the structure counts RefineCode uses (defs, imports, returns, assignments)
are line-shaped anyway (OpenCoder's opc_data_filtering itself counts substrings per line).
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
    def triple_quoted(self) -> list[str]:
        return _TRIPLE.findall(self.text)

    @cached_property
    def comment_chars(self) -> int:
        """Full-line ``#`` comments plus triple-quoted strings (docstrings); inline comments are not counted."""
        hashes = sum(len(s) for s in self.code_lines if s.startswith("#"))
        return hashes + sum(len(s) for s in self.triple_quoted)

    @cached_property
    def line_strings(self) -> list[list[str]]:
        """Single-line string literals per line (lines without a quote get an empty list)."""
        return [_LINE_STRING.findall(line) if ('"' in line or "'" in line) else [] for line in self.lines]

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
        """(ids, lengths): each word mapped to a dense id in first-seen order, and its char length."""
        vocab = {w: i for i, w in enumerate(dict.fromkeys(self.words))}
        ids = np.array(list(map(vocab.__getitem__, self.words)), dtype=np.int64)
        lengths = np.array(list(map(len, self.words)), dtype=np.int64)
        return ids, lengths

    def ngram_keys(self, n: int) -> np.ndarray:
        """One int64 key per word n-gram (polynomial hash of word ids; collisions are negligible)."""
        ids, _ = self.word_ids
        if len(ids) < n:
            return np.empty(0, dtype=np.int64)
        key = np.zeros(len(ids) - n + 1, dtype=np.uint64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # uint64 overflow wraps, as intended
            for j in range(n):
                key = key * np.uint64(1_000_003) + ids[j : len(ids) - n + 1 + j].astype(np.uint64)
        return key.view(np.int64)

    def top_ngram_char_fraction(self, n: int) -> float:
        """Share of word chars taken by the most frequent word n-gram (RedPajama-style)."""
        keys = self.ngram_keys(n)
        if len(keys) == 0 or self.nonspace_chars == 0:
            return 0.0
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] < 2:
            return 0.0
        first = int(np.argmax(inverse == top))
        _, lengths = self.word_ids
        return float(counts[top] * lengths[first : first + n].sum()) / self.nonspace_chars

    def duplicate_ngram_char_fraction(self, n: int) -> float:
        """Share of word chars covered by n-grams that occur more than once."""
        keys = self.ngram_keys(n)
        if len(keys) == 0 or self.nonspace_chars == 0:
            return 0.0
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        dup_start = counts[inverse] > 1
        # mark words i..i+n-1 for every duplicated start i, with a difference array
        delta = np.zeros(len(self.words) + 1, dtype=np.int64)
        starts = np.flatnonzero(dup_start)
        np.add.at(delta, starts, 1)
        np.add.at(delta, starts + n, -1)
        covered = np.cumsum(delta[:-1]) > 0
        _, lengths = self.word_ids
        return float(lengths[covered].sum()) / self.nonspace_chars
