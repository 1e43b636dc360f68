"""Decontamination against the evaluation sets (HumanEval+, MBPP+, MBPP) and any given files.

Two checks (BigCode's bigcode-dataset ``decontamination/find_substrings.py``, and an n-gram overlap as in
datatrove's ``n_grams.py``):

1. BigCode substring method: drop a document whose normalised text (lower-cased, whitespace
   collapsed) contains a normalised benchmark prompt docstring or canonical solution. Strings
   shorter than ``min_substring_chars`` are not used: one-liners such as ``return x + y`` occur in
   honest code everywhere (BigCode excludes the same kind by hand).
2. n-gram overlap: drop a document sharing more than ``max_ngram_hits`` code-token n-grams
   (n >= 13) with any benchmark prompt/solution; n-grams made only of numbers and single characters
   are ignored, since `0 1 2 3 ...` and `a b c d ...` sequences are what produce false hits on the
   stdlib (MBPP/265's `['a', 'b', ..., 'n']` matches test_doctest.py at n = 13).

Why an anchor pre-filter for (1): testing ~1,500 benchmark strings with ``in`` on every document
costs ~15 ms per file; a string can only occur in a document that contains its interior token
3-gram, so only strings whose anchor is among the document's 3-grams are tested.
"""

from __future__ import annotations

import ast
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffucoder import benchmark_data
from diffucoder.data import io
from diffucoder.data.config import DecontamConfig
from diffucoder.data.minhash import ngram_hashes, token_hashes

_ANCHOR = 3


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _prompt_docstring(prompt: str) -> str:
    """The docstring of the prompt's last function (HumanEval), else the prompt without quotes (MBPP+)."""
    try:
        tree = ast.parse(prompt + "\n    pass\n")
        funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        doc = ast.get_docstring(funcs[-1]) if funcs else None
        if doc:
            return doc
    except SyntaxError:
        pass
    return prompt.strip().strip('"').strip("'")


def _read_rows(uri: str) -> list[dict]:
    raw = io.read_bytes(uri)
    if uri.endswith(".gz"):
        raw = gzip.decompress(raw)
    rows = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{uri}:{lineno}: invalid JSON in a decontamination file: {exc.msg}"
                ) from exc
    return rows


def benchmark_strings(uri: str) -> list[tuple[str, str]]:
    """(item id, text) pairs: prompt docstrings/descriptions and canonical solutions of one file."""
    out = []
    for i, row in enumerate(_read_rows(uri)):
        item = f"{Path(uri).name}:{row.get('task_id', i)}"
        if "prompt" in row:
            out.append((item, _prompt_docstring(row["prompt"])))
        for field in ("text", "canonical_solution", "code"):
            if isinstance(row.get(field), str):
                out.append((item, row[field]))
    if not out:
        raise ValueError(f"{uri}: no prompt/text/canonical_solution/code fields to decontaminate against")
    return out


def _sources(cfg: DecontamConfig) -> list[tuple[str, str]]:
    """(URI, what to fix when it is missing) of every file the index is built from."""
    root = benchmark_data.root(cfg.benchmarks_dir)
    fix_dir = (
        f"data.decontam.benchmarks_dir={cfg.benchmarks_dir!r}: point it at a directory or s3:// prefix "
        "holding evalplus/ and mbpp/ as diffucoder/benchmark_data does, or set it to null for the data "
        "shipped with diffucoder"
    )
    fix_extra = "data.decontam.extra_files: fix or drop this entry"
    return [(io.join(root, f), fix_dir) for f in benchmark_data.FILES] + [
        (uri, fix_extra) for uri in cfg.extra_files
    ]


def _strings_of(uri: str, fix: str) -> list[tuple[str, str]]:
    try:
        return benchmark_strings(uri)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"decontamination file {uri} does not exist ({fix})") from exc


@dataclass
class Decontaminator:
    """Benchmark index: normalised strings with their anchors, and the n-gram hash set."""

    cfg: DecontamConfig
    strings: list[tuple[str, str]]  # (item, normalised text)
    anchors: np.ndarray  # uint64 anchor per string with >= _ANCHOR + 2 tokens
    anchored: list[int]  # index into strings for each anchor
    always: list[int]  # strings too short for an anchor: always tested
    ngrams: np.ndarray  # sorted uint64
    ngram_item: dict[int, str]

    @classmethod
    def build(cls, cfg: DecontamConfig) -> Decontaminator:
        pairs = [p for uri, setting in _sources(cfg) for p in _strings_of(uri, setting)]
        strings, anchors, anchored, always = [], [], [], []
        ngram_item: dict[int, str] = {}
        for item, text in pairs:
            tokens, trivial = token_hashes(text)
            grams = ngram_hashes(tokens, cfg.ngram)
            numeric = _all_trivial(trivial, cfg.ngram)
            for g in grams[~numeric].tolist():
                ngram_item.setdefault(g, item)
            norm = normalise(text)
            if len(norm) < cfg.min_substring_chars:
                continue
            strings.append((item, norm))
            if tokens.size >= _ANCHOR + 2:
                anchors.append(ngram_hashes(tokens[1 : 1 + _ANCHOR], _ANCHOR)[0])
                anchored.append(len(strings) - 1)
            else:
                always.append(len(strings) - 1)
        return cls(
            cfg,
            strings,
            np.asarray(anchors, dtype=np.uint64),
            anchored,
            always,
            np.sort(np.fromiter(ngram_item, dtype=np.uint64, count=len(ngram_item))),
            ngram_item,
        )

    def reason(self, text: str) -> str | None:
        """None when clean, else ``decontam_substring:<item>`` or ``decontam_ngram:<item>``."""
        tokens, trivial = token_hashes(text)
        doc_grams = np.unique(ngram_hashes(tokens, _ANCHOR))
        candidates = [self.anchored[i] for i in np.flatnonzero(np.isin(self.anchors, doc_grams))]
        if candidates or self.always:
            norm = normalise(text)
            for idx in sorted(set(candidates) | set(self.always)):
                item, needle = self.strings[idx]
                if needle in norm:
                    return f"decontam_substring:{item}"
        grams = ngram_hashes(tokens, self.cfg.ngram)
        grams = np.unique(grams[~_all_trivial(trivial, self.cfg.ngram)])
        hits = grams[np.isin(grams, self.ngrams)]
        if hits.size > self.cfg.max_ngram_hits:
            return f"decontam_ngram:{self.ngram_item[int(hits[0])]}"
        return None


def _all_trivial(trivial: np.ndarray, n: int) -> np.ndarray:
    """Per n-gram window: True when every token in it is trivial (a number or a single character)."""
    if trivial.size < n:
        return np.zeros(0, dtype=bool)
    counts = np.concatenate(([0], np.cumsum(~trivial)))
    return (counts[n:] - counts[:-n]) == 0
