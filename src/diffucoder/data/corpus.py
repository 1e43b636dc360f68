"""Tiny-preset corpora made from what is on the machine: the CPython stdlib and the task mix.

- ``build_stdlib_corpus``: the interpreter's own standard library (``sysconfig`` stdlib path,
  site-packages excluded), licence PSF-2.0, provenance per file (source, relative path, sha256).
  It is written as raw text shards, the input of ``diffucoder data prepare``.
- ``build_midtrain_mix``: the stage-2 annealing set for tiny. The paper anneals on "high-quality,
  task-like" code (OpenCoder's algorithmic corpus and synthetic snippets); our analogue is the
  filtered stdlib plus every *train* task written as a small module (signature, the instruction as
  docstring, the solution, its asserts). Held-out tasks are never included.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from diffucoder.data import io
from diffucoder.data.config import DataConfig
from diffucoder.data.readers import SkipLog, make_doc, read_source_dir
from diffucoder.data.tiny_tasks import TinyTask, task_as_code

STDLIB_LICENSE = "PSF-2.0"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def write_doc_shards(out: Path, docs: Iterable[dict], shard_docs: int) -> list[str]:
    """Cut a document stream into `shard-NNNNN.parquet` files of ``shard_docs`` documents."""
    names: list[str] = []
    batch: list[dict] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == shard_docs:
            names.append(io.shard_name(len(names)))
            io.write_text_shard(str(out / names[-1]), batch)
            batch = []
    if batch or not names:
        names.append(io.shard_name(len(names)))
        io.write_text_shard(str(out / names[-1]), batch)
    return names


def stdlib_files(root: Path, include_tests: bool, max_files: int | None, cfg: DataConfig) -> set[str]:
    """Relative paths of the stdlib subset to read (sorted order; tests optional; first N)."""
    excluded = set(cfg.reader.exclude_dirs)
    rels = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if excluded.intersection(parts[:-1]):
            continue
        if not include_tests and ({"test", "tests", "idle_test"} & set(parts[:-1])):
            continue
        rels.append(path.relative_to(root).as_posix())
    return set(rels[:max_files] if max_files else rels)


def build_stdlib_corpus(
    out_uri: str,
    cfg: DataConfig,
    max_files: int | None = None,
    include_tests: bool = True,
    root: Path | None = None,
) -> dict:
    """Write the stdlib as raw text shards + stats.json under ``out_uri``; returns the stats."""
    root = root or stdlib_root()
    source = f"cpython-stdlib-{platform.python_version()}"
    skips = SkipLog()
    include = stdlib_files(root, include_tests, max_files, cfg)
    docs = list(read_source_dir(str(root), source, STDLIB_LICENSE, cfg.reader, skips, include=include))
    with io.output_dir(out_uri) as out:
        shards = write_doc_shards(out, docs, cfg.shard_docs)
        stats = {
            "source": source,
            "root": str(root),
            "license": STDLIB_LICENSE,
            "files": len(docs),
            "bytes": sum(len(d["text"].encode()) for d in docs),
            "shards": shards,
            "skipped": skips.to_dict(),
        }
        io.write_json(str(out / "stats.json"), stats)
    return stats


def read_tasks(uri: str) -> list[TinyTask]:
    """Tiny tasks from a `train.jsonl`/`heldout.jsonl`; a bad row raises naming file and line."""
    tasks = []
    for lineno, line in enumerate(io.read_bytes(uri).decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            tasks.append(TinyTask(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{uri}:{lineno}: not a tiny-task row: {exc}") from exc
    return tasks


def task_docs(tasks: Iterable[TinyTask], copies: int = 1) -> list[dict]:
    docs = []
    for task in tasks:
        if task.split != "train":
            raise ValueError(f"task {task.task_id}: split {task.split!r} must never enter a training corpus")
        for copy in range(copies):
            doc = make_doc(
                task_as_code(task),
                "tiny-tasks-train",
                task.task_id,
                "Apache-2.0",
                "python",
                doc_id=f"{task.task_id}#{copy}",
            )
            docs.append(doc)
    return docs


def build_midtrain_mix(
    corpus_shards: list[str], tasks_uri: str, out_uri: str, cfg: DataConfig, seed: int = 0
) -> dict:
    """Stdlib shards + train tasks as code, interleaved in a seeded, order-independent way."""
    docs = [d for uri in corpus_shards for d in io.read_text_shard(uri)]
    n_corpus = len(docs)
    docs += task_docs(read_tasks(tasks_uri), cfg.midtrain_mix.task_copies)
    # Order by a seeded hash of the id: deterministic, independent of input order, well mixed.
    docs.sort(key=lambda d: hashlib.sha256(f"{seed}:{d['id']}".encode()).digest())
    with io.output_dir(out_uri) as out:
        shards = write_doc_shards(out, docs, cfg.shard_docs)
        stats = {"corpus_docs": n_corpus, "task_docs": len(docs) - n_corpus, "shards": shards, "seed": seed}
        io.write_json(str(out / "stats.json"), stats)
    return stats
