"""What a run writes about itself: ``pipeline.json`` (the run record), ``steps/<step>.json`` (one
record per finished step, read by the run summary) and the metadata a KFP artifact carries.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from diffucoder import storage
from diffucoder.config import RunConfig

PIPELINE_RECORD = "pipeline.json"

STEP_DIR = "steps"


def artifact_metadata(uri: str, cfg: RunConfig, **extra: Any) -> dict[str, Any]:
    """What a KFP artifact carries for a directory artifact: URI, file count, bytes, checksums, config.

    ``manifest_sha256`` hashes the sealed MANIFEST.json, which lists every file's sha256, so two
    artifacts with equal ``manifest_sha256`` hold byte-identical files; ``content_sha256`` hashes
    the file list alone, so an artifact rebuilt with the same bytes keeps it. Refuses an incomplete
    (unsealed) directory: a step must never hand on a half-written artifact.
    """
    if not storage.is_complete(uri):
        raise storage.IncompleteArtifactError(
            f"{uri}: no {storage.MANIFEST_NAME}; the step did not finish writing it"
        )
    manifest = storage.read_manifest(uri)
    blob = storage.read_bytes(storage.join(uri, storage.MANIFEST_NAME))
    files = manifest.files
    meta: dict[str, Any] = {
        "uri": uri,
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "manifest_sha256": hashlib.sha256(blob).hexdigest(),
        "content_sha256": manifest.content_sha256(),
        "config_fingerprint": cfg.fingerprint(),
        "config": cfg.model_dump(mode="json"),
    }
    if len(files) <= 16:  # small artifacts list each file's checksum directly
        meta["sha256"] = {f.path: f.sha256 for f in files}
    meta.update(_finite_or_text(extra))
    return meta


def _finite_or_text(value: Any) -> Any:
    """NaN/inf floats as text: KFP metadata is a protobuf Struct, which cannot hold them, and a
    diverged run's NaN loss must reach the artifact, not crash the step that records it."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite_or_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_text(v) for v in value]
    return value


def record_step(
    root: str,
    step: str,
    *,
    seconds: float,
    metrics: dict[str, Any],
    uris: dict[str, str],
    settings: dict[str, str] | None = None,
) -> dict:
    """Write ``steps/<step>.json`` (read by the run summary); returns the record.

    ``settings``: what the step decided at run time and why (a training stage's precision).
    """
    record = {
        "step": step,
        "seconds": round(seconds, 2),
        "metrics": metrics,
        "uris": uris,
        "settings": settings or {},
        "finished_at": time.time(),
    }
    storage.write_text(
        storage.join(root, STEP_DIR, f"{step}.json"), json.dumps(record, indent=1, default=str)
    )
    return record


def read_step_records(root: str) -> list[dict]:
    """Every step record of a run, in the order the steps finished."""
    prefix = storage.join(root, STEP_DIR)
    records = [json.loads(storage.read_text(u)) for u in storage.list_files(prefix) if u.endswith(".json")]
    return sorted(records, key=lambda r: r["finished_at"])


@contextmanager
def timed_step(root: str, step: str, started: float | None = None) -> Iterator[dict]:
    """Time a step body (or from ``started``, a wall-clock time, when it closes a chain of tasks);
    on success write its record from what the body put in the yielded dict."""
    started = time.time() if started is None else started
    out: dict[str, Any] = {"metrics": {}, "uris": {}, "settings": {}}
    yield out
    record_step(
        root,
        step,
        seconds=time.time() - started,
        metrics=out["metrics"],
        uris=out["uris"],
        settings=out["settings"],
    )


def read_pipeline_record(root: str) -> dict[str, Any]:
    uri = storage.join(root, PIPELINE_RECORD)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: not a pipeline run root (no {PIPELINE_RECORD}; did the run start?)")
    return json.loads(storage.read_text(uri))
