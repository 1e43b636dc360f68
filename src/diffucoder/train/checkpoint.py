"""Checkpoint layout, atomic sealing, retention and "newest complete" resolution.

Layout under ``<out>/checkpoints/``::

    step-000050/
        model/              HF model + tokenizer via diffucoder.model.save_model (own MANIFEST.json)
        deepspeed/state/    DeepSpeed engine state: fp32 weights, optimizer, LR scheduler (per rank)
        rng/rank-00000.pt   python / numpy / torch (+cuda) RNG states of each rank
        trainer_state.json  step, data position, metric history, MLflow run id
        config.yaml         the resolved RunConfig
        MANIFEST.json       written last by storage.seal_dir: the checkpoint is complete

Atomicity: every rank writes into ``.tmp-step-000050/``; after a barrier rank 0 seals it and
renames it to ``step-000050/`` (one rename on a local file system), then uploads it with
``storage.put_dir`` (MANIFEST.json last) when ``--out`` is on S3. A process killed mid-save leaves
a ``.tmp-*`` dir or an unsealed remote prefix, and neither is ever picked by :func:`find_latest`.

Checkpoints are written to a local directory (``--out`` itself, or a staging dir derived from the
S3 URI) that every rank of the node shares; multi-node jobs need that dir on a shared volume.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

from diffucoder import storage

CHECKPOINTS = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d{6,})$")
TRAINER_STATE = "trainer_state.json"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def local_root_for(out_uri: str) -> Path:
    """The local directory checkpoints are written to first: ``out`` itself, or a staging dir for S3.

    The staging path is a pure function of the URI so every rank (and a restarted job) agrees on it.
    """
    if not storage.is_s3(out_uri):
        return Path(out_uri)
    digest = hashlib.sha256(out_uri.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "diffucoder-train" / digest


def discard_staging(out_uri: str) -> None:
    """Remove the local staging dir of a finished run that published to S3.

    Every checkpoint and the final model are in the object store by then, so the staging copy (up to
    ``keep_last`` checkpoints, the packed-data cache and the launch config) only fills the node's
    disk; on a long-lived machine it would accumulate run after run. Local outputs are left alone:
    there the staging dir is the output itself.
    """
    if storage.is_s3(out_uri):
        shutil.rmtree(local_root_for(out_uri), ignore_errors=True)


def tmp_dir(local_root: Path, step: int) -> Path:
    return local_root / CHECKPOINTS / f".tmp-{step_name(step)}"


def seal_and_publish(local_root: Path, step: int, out_uri: str) -> str:
    """Rank 0, after every rank wrote into :func:`tmp_dir`: seal, rename, upload. Returns the checkpoint URI."""
    tmp = tmp_dir(local_root, step)
    final = local_root / CHECKPOINTS / step_name(step)
    storage.seal_dir(tmp)
    if final.exists():  # an earlier attempt at this step that a resume is about to redo
        shutil.rmtree(final)
    tmp.rename(final)
    if storage.is_s3(out_uri):
        uri = storage.join(out_uri, CHECKPOINTS, step_name(step))
        storage.put_dir(final, uri)
        return uri
    return str(final)


def _complete_local(local_root: Path) -> dict[int, str]:
    found = {}
    base = local_root / CHECKPOINTS
    if base.is_dir():
        for child in base.iterdir():
            match = STEP_DIR.match(child.name)
            if match and child.is_dir() and storage.is_complete(str(child)):
                found[int(match.group(1))] = str(child)
    return found


def _complete_remote(out_uri: str) -> dict[int, str]:
    found = {}
    prefix = storage.join(out_uri, CHECKPOINTS)
    for uri in storage.list_files(prefix):
        rel = uri[len(prefix) :].strip("/").split("/")
        if len(rel) == 2 and rel[1] == storage.MANIFEST_NAME and (match := STEP_DIR.match(rel[0])):
            found[int(match.group(1))] = storage.join(prefix, rel[0])
    return found


def find_latest(out_uri: str) -> str | None:
    """URI of the newest complete checkpoint under ``out_uri`` (local staging or S3), or None."""
    found = _complete_local(local_root_for(out_uri))
    if storage.is_s3(out_uri):
        for step, uri in _complete_remote(out_uri).items():
            found.setdefault(step, uri)
    return found[max(found)] if found else None


def materialize(ckpt_uri: str, local_root: Path) -> Path:
    """A local, complete copy of the checkpoint (downloads a remote one into the staging dir).

    Raises:
        storage.IncompleteArtifactError: the checkpoint has no MANIFEST.json.
    """
    if not storage.is_s3(ckpt_uri):
        path = Path(ckpt_uri)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume {ckpt_uri}: no such checkpoint directory")
        if not storage.is_complete(ckpt_uri):
            raise storage.IncompleteArtifactError(
                f"--resume {ckpt_uri}: checkpoint has no MANIFEST.json (it was interrupted while saving)"
            )
        return path
    name = ckpt_uri.rstrip("/").rsplit("/", 1)[-1]
    dst = local_root / CHECKPOINTS / name
    if not storage.is_complete(str(dst)):
        if dst.exists():
            shutil.rmtree(dst)
        storage.get_dir(ckpt_uri, dst)
    return dst


def read_trainer_state(ckpt_dir: Path) -> dict:
    path = ckpt_dir / TRAINER_STATE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable trainer state: {exc}") from exc


def apply_retention(local_root: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete local checkpoints, and stale ``.tmp-*`` dirs.

    Remote copies are kept: the storage API has no delete, and an object-store lifecycle rule is
    the usual place for remote retention. Returns what was removed.
    """
    base = local_root / CHECKPOINTS
    removed = []
    complete = sorted(_complete_local(local_root))
    for step in complete[:-keep_last] if len(complete) > keep_last else []:
        path = base / step_name(step)
        shutil.rmtree(path)
        removed.append(path)
    for stale in base.glob(".tmp-step-*") if base.is_dir() else []:
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    return removed
