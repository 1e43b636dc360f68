"""A generated corpus of small Python files with known near-duplicates, for the dedup benchmarks.

Files are built from the interpreter's stdlib (no site-packages), cut into snippets of 6-40
lines at blank lines:

- an *original* joins 2-4 random snippets (files that share a snippet are realistic hard
  negatives, Jaccard well below any dedup threshold);
- a *near copy* (``near_fraction`` of the files) is an earlier original after random edits of
  random strength: identifiers renamed, a run of lines deleted, lines from another snippet
  inserted, re-indented. Its exact Jaccard to the original spans ~0.2-1.0, so the labelled
  pairs straddle the threshold;
- an *exact copy* (``exact_fraction``) repeats an earlier file byte for byte.

``generate`` streams documents (nothing is written to the repository); ``labels`` records
every copy's source. Deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import random
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_IDENT = re.compile(r"\b[a-z_][a-z0-9_]{2,}\b")
_WINDOW = 20_000  # copies are made from the last 20,000 originals: memory stays bounded


def stdlib_snippets(min_lines: int = 6, max_lines: int = 40) -> list[str]:
    """The stdlib's .py files cut at blank lines into snippets of min..max lines."""
    root = Path(sysconfig.get_paths()["stdlib"])
    snippets = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        block: list[str] = []
        for line in text.splitlines(keepends=True):
            block.append(line)
            if (not line.strip() and len(block) >= min_lines) or len(block) >= max_lines:
                snippets.append("".join(block))
                block = []
        if len(block) >= min_lines:
            snippets.append("".join(block))
    return snippets


@dataclass
class Labels:
    """What each copy was made from: near copies and exact copies, by document index."""

    near_source: dict[int, int] = field(default_factory=dict)
    exact_source: dict[int, int] = field(default_factory=dict)


def _mutate(text: str, rng: random.Random, snippets: list[str]) -> str:
    strength = rng.random()  # 0 = a light touch, 1 = heavily edited
    lines = text.splitlines(keepends=True)
    if strength > 0.2 and len(lines) > 4:  # delete a run of lines
        n = max(1, int(len(lines) * rng.uniform(0.02, 0.35) * strength))
        at = rng.randrange(len(lines) - n + 1)
        del lines[at : at + n]
    if strength > 0.4:  # insert lines from another snippet
        extra = rng.choice(snippets).splitlines(keepends=True)
        n = max(1, int(len(extra) * rng.uniform(0.1, 0.6) * strength))
        at = rng.randrange(len(lines) + 1)
        lines[at:at] = extra[:n]
    out = "".join(lines)
    names = sorted(set(_IDENT.findall(out)))
    if names:  # rename a few identifiers everywhere
        for name in rng.sample(names, min(len(names), 1 + int(6 * strength * rng.random()))):
            out = re.sub(rf"\b{name}\b", f"{name}_{rng.randrange(100)}", out)
    if rng.random() < 0.5:
        out = out.replace("    ", "  ")
    return out


def generate(
    n_files: int,
    *,
    seed: int = 0,
    near_fraction: float = 0.2,
    exact_fraction: float = 0.05,
    labels: Labels | None = None,
    snippets: list[str] | None = None,
) -> Iterator[dict]:
    """``n_files`` documents ``{"id", "text", "sha256"}`` (ids ``gen:00000000`` in order)."""
    rng = random.Random(seed)
    snippets = snippets if snippets is not None else stdlib_snippets()
    originals: list[int] = []
    texts: dict[int, str] = {}  # the originals copies may be made from: the last _WINDOW of them
    for i in range(n_files):
        roll = rng.random()
        if originals and roll < exact_fraction + near_fraction:
            src = originals[rng.randrange(max(0, len(originals) - _WINDOW), len(originals))]
            if roll < exact_fraction:
                text = texts[src]
                if labels is not None:
                    labels.exact_source[i] = src
            else:
                text = _mutate(texts[src], rng, snippets)
                if labels is not None:
                    labels.near_source[i] = src
        else:
            text = "".join(rng.choice(snippets) for _ in range(rng.randint(2, 4)))
            originals.append(i)
            texts[i] = text
            if len(originals) > _WINDOW:
                texts.pop(originals[-_WINDOW - 1])
        yield {"id": f"gen:{i:08d}", "text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}
