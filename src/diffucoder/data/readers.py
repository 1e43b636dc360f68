"""Readers: source directories, JSONL, Parquet and HF ``datasets`` saved dirs -> document dicts.

A document is a dict with the filtered-shard columns (``id, text, source, path, license, sha256,
lang``). Bad input never crashes a run: binary, non-UTF-8 and oversize files, malformed JSONL rows
and rows without a text field are skipped and counted by reason in a :class:`SkipLog`, which names
the first few offenders (file and row) so the stats say exactly what was left out.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from diffucoder.data import io
from diffucoder.data.config import ReaderConfig

TEXT_FIELDS = ("text", "content", "code")
TABULAR = (".jsonl", ".jsonl.gz", ".parquet")
LANG_BY_SUFFIX = {
    ".py": "python",
    ".pyi": "python",
    ".c": "c",
    ".h": "c",
    ".go": "go",
    ".rs": "rust",
    ".js": "javascript",
    ".java": "java",
    ".sh": "shell",
    ".md": "markdown",
}


class SkipLog:
    """Counts skipped inputs by reason and keeps a few named examples per reason."""

    def __init__(self, examples_per_reason: int = 5) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self._limit = examples_per_reason

    def skip(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self._limit:
            shown.append(where)

    def to_dict(self) -> dict:
        return {"counts": dict(sorted(self.counts.items())), "examples": self.examples}


def make_doc(
    text: str,
    source: str,
    path: str,
    license: str | None,
    lang: str | None,
    doc_id: str | None = None,
    raw: bytes | None = None,
) -> dict:
    digest = hashlib.sha256(raw if raw is not None else text.encode("utf-8")).hexdigest()
    return {
        "id": doc_id or f"{source}:{path}",
        "text": text,
        "source": source,
        "path": path,
        "license": license,
        "sha256": digest,
        "lang": lang,
    }


def decode_source(raw: bytes, where: str, max_bytes: int, skips: SkipLog) -> str | None:
    """UTF-8 text of a file, or None (counted) when it is oversize, binary or not UTF-8."""
    if len(raw) > max_bytes:
        skips.skip("oversize", where)
        return None
    if b"\x00" in raw:
        skips.skip("binary", where)
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        skips.skip("non_utf8", where)
        return None


def read_source_dir(
    root: str,
    source: str,
    license: str | None,
    cfg: ReaderConfig,
    skips: SkipLog,
    include: set[str] | None = None,
) -> Iterator[dict]:
    """Source files under a local ``root`` in sorted path order, with provenance.

    ``include`` optionally restricts to these relative paths (used to take stdlib subsets).
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"source dir {root!r} does not exist")
    excluded = set(cfg.exclude_dirs)
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base).as_posix()
        if excluded.intersection(path.relative_to(base).parts[:-1]) or not path.is_file():
            continue
        if path.suffix not in cfg.extensions or (include is not None and rel not in include):
            continue
        try:
            raw = path.read_bytes()
        except OSError as exc:
            skips.skip("unreadable", f"{path}: {exc}")
            continue
        text = decode_source(raw, str(path), cfg.max_file_bytes, skips)
        if text is not None:
            yield make_doc(text, source, rel, license, LANG_BY_SUFFIX.get(path.suffix), raw=raw)


def _row_to_doc(row: dict, where: str, default_source: str, skips: SkipLog) -> dict | None:
    if not isinstance(row, dict):
        skips.skip("malformed_row", f"{where}: not an object")
        return None
    field = next((f for f in TEXT_FIELDS if f in row), None)
    if field is None:
        skips.skip("missing_field:text", f"{where}: none of {', '.join(TEXT_FIELDS)}")
        return None
    text = row[field]
    if not isinstance(text, str):
        skips.skip(f"bad_field:{field}", f"{where}: {type(text).__name__}, expected str")
        return None
    source = str(row.get("source") or default_source)
    path = str(row.get("path") or where)
    lang = row.get("lang") or LANG_BY_SUFFIX.get(Path(path).suffix)
    doc_id = str(row["id"]) if row.get("id") is not None else f"{source}:{path}"
    return make_doc(text, source, path, row.get("license"), lang, doc_id=doc_id)


def read_jsonl(uri: str, skips: SkipLog) -> Iterator[dict]:
    """JSONL (optionally .gz) rows with a text/content/code field; bad rows are named and skipped."""
    raw = io.read_bytes(uri)
    if uri.endswith(".gz"):
        raw = gzip.decompress(raw)
    for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{uri}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            skips.skip("malformed_json", f"{where}: {exc.msg}")
            continue
        doc = _row_to_doc(row, where, Path(uri).name, skips)
        if doc is not None:
            yield doc


def read_parquet(uri: str, skips: SkipLog) -> Iterator[dict]:
    for i, row in enumerate(io.read_table(uri).to_pylist()):
        doc = _row_to_doc(row, f"{uri}#row{i}", Path(uri).name, skips)
        if doc is not None:
            yield doc


def read_hf_saved(path: str, skips: SkipLog) -> Iterator[dict]:
    """A ``datasets.Dataset.save_to_disk`` directory (local)."""
    import datasets  # heavy import, only when this reader is used

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        raise ValueError(f"{path}: is a DatasetDict with splits {list(ds)}; point at one split's directory")
    for i, row in enumerate(ds):
        doc = _row_to_doc(row, f"{path}#row{i}", Path(path).name, skips)
        if doc is not None:
            yield doc


def is_hf_saved_dir(path: str) -> bool:
    return not io.is_s3(path) and (
        Path(path, "dataset_info.json").is_file() or Path(path, "state.json").is_file()
    )


def input_units(uri: str) -> list[str]:
    """Split an input URI into independently readable units (the sharding grain).

    A file is one unit; a dir or s3:// prefix of JSONL/Parquet files gives one unit per file; an
    HF saved dir or a source dir is one unit (cut into shards by document count at ingest).
    """
    if uri.endswith(TABULAR) or (not io.is_s3(uri) and Path(uri).is_file()):
        return [uri]
    if is_hf_saved_dir(uri):
        return [uri]
    tabular = [u for u in io.list_files(uri) if u.endswith(TABULAR)]
    if io.is_s3(uri) and not tabular:
        raise ValueError(f"{uri}: no JSONL/Parquet files under this prefix")
    return tabular or [uri]


def read_unit(
    uri: str, cfg: ReaderConfig, skips: SkipLog, source: str | None = None, license: str | None = None
) -> Iterator[dict]:
    """Documents of one input unit, dispatching on its kind."""
    if uri.endswith((".jsonl", ".jsonl.gz")):
        yield from read_jsonl(uri, skips)
    elif uri.endswith(".parquet"):
        yield from read_parquet(uri, skips)
    elif is_hf_saved_dir(uri):
        yield from read_hf_saved(uri, skips)
    elif not io.is_s3(uri) and Path(uri).is_dir():
        yield from read_source_dir(uri, source or Path(uri).name, license, cfg, skips)
    else:
        raise ValueError(f"{uri}: not a JSONL/Parquet file, HF saved dataset dir or source dir")
