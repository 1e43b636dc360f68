"""Reading and writing the data stage's artifacts (Parquet shards, JSONL, JSON) by URI.

Local paths are handled here directly (pyarrow reads them in place, which the per-shard process
pool relies on); ``s3://`` URIs go through :mod:`diffucoder.storage`, the only module that knows
S3. Every write is atomic: bytes land under a temporary name and are renamed into place.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TEXT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("path", pa.string()),
        ("license", pa.string()),
        ("sha256", pa.string()),
        ("lang", pa.string()),
    ]
)
TEXT_COLUMNS = tuple(TEXT_SCHEMA.names)


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def join(uri: str, *parts: str) -> str:
    if is_s3(uri):
        return "/".join([str(uri).rstrip("/"), *parts])
    return str(Path(uri, *parts))


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        from diffucoder import storage

        return storage.read_bytes(uri)
    path = Path(uri)
    if not path.is_file():
        raise FileNotFoundError(f"{uri}: no such file")
    return path.read_bytes()


def write_bytes(uri: str, data: bytes) -> None:
    """Atomic write: a temp file in the target directory, then rename."""
    if is_s3(uri):
        from diffucoder import storage

        storage.write_bytes(uri, data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def exists(uri: str) -> bool:
    if is_s3(uri):
        from diffucoder import storage

        return storage.exists(uri)
    return Path(uri).exists()


def list_files(prefix: str, suffix: str = "") -> list[str]:
    """Files under a directory/prefix ending in ``suffix``, sorted (so shard order is stable)."""
    if is_s3(prefix):
        from diffucoder import storage

        return sorted(u for u in storage.list_files(prefix) if u.endswith(suffix))
    root = Path(prefix)
    if root.is_file():
        return [str(root)] if str(root).endswith(suffix) else []
    return sorted(str(p) for p in root.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))


def write_json(uri: str, obj) -> None:
    write_bytes(uri, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(uri: str):
    try:
        return json.loads(read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{uri}: invalid JSON: {exc}") from exc


def write_jsonl(uri: str, rows: Iterable[dict]) -> None:
    write_bytes(uri, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


def write_table(uri: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    write_bytes(uri, buf.getvalue())


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    if is_s3(uri):
        return pq.read_table(io.BytesIO(read_bytes(uri)), columns=columns)
    return pq.read_table(uri, columns=columns)


def write_array(uri: str, array: np.ndarray) -> None:
    """One array as a ``.npy`` file (atomic, like every write here)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_bytes(uri, buf.getvalue())


def read_array(uri: str) -> np.ndarray:
    """A ``.npy`` file. Local files are memory-mapped, so taking a few rows reads only their
    pages; an s3:// object is downloaded whole (``storage`` has no ranged reads)."""
    if is_s3(uri):
        return np.load(io.BytesIO(read_bytes(uri)), allow_pickle=False)
    if not Path(uri).is_file():
        raise FileNotFoundError(f"{uri}: no such file")
    return np.load(uri, mmap_mode="r", allow_pickle=False)


def write_text_shard(uri: str, docs: list[dict]) -> None:
    """A filtered-text shard (`shard-00000.parquet`, columns as in docs/interfaces.md)."""
    columns = {name: [d.get(name) for d in docs] for name in TEXT_COLUMNS}
    write_table(uri, pa.table(columns, schema=TEXT_SCHEMA))


def read_text_shard(uri: str) -> list[dict]:
    return read_table(uri).select(list(TEXT_COLUMNS)).to_pylist()


def shard_name(index: int, ext: str = "parquet") -> str:
    return f"shard-{index:05d}.{ext}"


@contextmanager
def output_dir(uri: str) -> Iterator[Path]:
    """A local directory to write a directory artifact into; published complete on clean exit.

    Local: the directory itself, sealed with MANIFEST.json last. s3://: a temp dir uploaded with
    ``storage.put_dir`` (manifest last). On an exception nothing is sealed or uploaded, so readers
    never take a half-written artifact for a complete one.
    """
    from diffucoder import storage

    if is_s3(uri):
        with tempfile.TemporaryDirectory(prefix="diffucoder-data-") as tmp:
            yield Path(tmp)
            storage.put_dir(tmp, uri)
        return
    path = Path(uri)
    path.mkdir(parents=True, exist_ok=True)
    (path / "MANIFEST.json").unlink(missing_ok=True)  # being rewritten: not complete until resealed
    yield path
    storage.seal_dir(path)
