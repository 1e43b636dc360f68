"""Retrain only on new data: the run's data fingerprint, and the check that skips training when the
champion was trained on the same data.
"""

from __future__ import annotations

import hashlib
import json

from diffucoder import storage
from diffucoder.config import RunConfig
from diffucoder.steps.records import PIPELINE_RECORD, read_pipeline_record, record_step
from diffucoder.steps.train_eval import STAGE_DATA

DATA_ARTIFACTS = ("corpus", "tasks", "tokenizer", "midtrain_mix", "pretrain_packed", "midtrain_packed")

SKIPPED_TAG = "diffucoder.skipped"


def stage_source_uris(cfg: RunConfig) -> dict[str, str]:
    """The sources stages 3-4 read directly (``data.sources.instruct``/``grpo`` when not generated):
    no data artifact covers them, so the fingerprint hashes them itself. Stage 1-2 sources reach
    the stages through the corpus, mix and packed artifacts, which are hashed already."""
    sources = cfg.data.sources
    return {
        stage: sources.of(stage) for stage in STAGE_DATA if sources.of(stage) and not sources.generated(stage)
    }


def _source_sha256(uri: str) -> str:
    """A file's sha256, or for a directory/prefix the hash of its files' relative names and hashes."""
    files = storage.list_files(uri)
    if not files:
        return hashlib.sha256(storage.read_bytes(uri)).hexdigest()
    digest = hashlib.sha256()
    for file_uri in files:
        name = file_uri[len(str(uri)) :].lstrip("/")
        digest.update(f"{name}\0{hashlib.sha256(storage.read_bytes(file_uri)).hexdigest()}\n".encode())
    return digest.hexdigest()


def data_fingerprint(contents: dict[str, str], stage_data_uris: dict[str, str]) -> str:
    """Content hash of what the stages train on: the data artifacts' content hashes (every file's
    path, size and sha256, not when it was written, so data steps that rerun without KFP's cache and
    write the same bytes give the same fingerprint) and the source each later stage reads directly
    (:func:`stage_source_uris`) with its files' hash."""
    missing = sorted(set(DATA_ARTIFACTS) - set(contents))
    if missing:
        raise ValueError(f"data fingerprint: no content hash for {missing}")
    key = {name: contents[name] for name in DATA_ARTIFACTS}
    for stage, uri in sorted(stage_data_uris.items()):
        if uri:
            key[stage] = f"{uri}#{_source_sha256(uri)}"
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def check_data(
    cfg: RunConfig, *, root: str, parent_run_id: str, fingerprint: str, skip_if_unchanged: bool
) -> bool:
    """Record the run's data fingerprint; False (skip training) when asked to and the champion has it.

    The parent run gets ``diffucoder.data_hash`` = the fingerprint, and when skipping
    ``diffucoder.skipped`` with the reason; the exit handler then closes it FINISHED.
    """
    from diffucoder import tracking
    from diffucoder.ops.promotion import DATA_HASH_TAG

    record = read_pipeline_record(root)
    record["data_fingerprint"] = fingerprint
    storage.write_text(storage.join(root, PIPELINE_RECORD), json.dumps(record, indent=1))
    tracking.configure(cfg.tracking)
    if parent_run_id:
        tracking.set_run_tags(parent_run_id, {DATA_HASH_TAG: fingerprint}, cfg=cfg.tracking)
    if not skip_if_unchanged:
        return True
    name = cfg.tracking.registered_model_name
    champion = tracking.model_version(name, alias=cfg.promotion.champion_alias, cfg=cfg.tracking)
    if champion is None or champion.tags.get(DATA_HASH_TAG) != fingerprint:
        return True
    reason = (
        f"data unchanged: fingerprint {fingerprint} equals that of {name} version {champion.version} "
        f"(alias {cfg.promotion.champion_alias!r}); training and evaluation skipped"
    )
    print(reason)
    if parent_run_id:
        tracking.set_run_tags(parent_run_id, {SKIPPED_TAG: reason}, cfg=cfg.tracking)
    record_step(root, "check-data", seconds=0.0, metrics={"skipped": 1}, uris={})
    return False
