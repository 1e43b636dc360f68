"""Checkpoint resolution: only sealed step dirs count; retention; remote (S3) checkpoints."""

from __future__ import annotations

import pytest

from diffucoder import storage
from diffucoder.train import checkpoint as ckpt


def _fake_checkpoint(root, step, sealed=True, tmp=False):
    """A checkpoint dir with a payload file; sealed = MANIFEST.json written (complete)."""
    path = ckpt.tmp_dir(root, step) if tmp else root / ckpt.CHECKPOINTS / ckpt.step_name(step)
    path.mkdir(parents=True)
    (path / ckpt.TRAINER_STATE).write_text(f'{{"step": {step}}}')
    if sealed:
        storage.seal_dir(path)
    return path


def test_newest_complete_wins_half_written_never_picked(tmp_path):
    _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 8)
    _fake_checkpoint(tmp_path, 12, sealed=False)  # killed before MANIFEST.json
    _fake_checkpoint(tmp_path, 16, sealed=False, tmp=True)  # killed before rename
    assert ckpt.find_latest(str(tmp_path)) == str(tmp_path / "checkpoints" / "step-000008")


def test_no_checkpoint(tmp_path):
    assert ckpt.find_latest(str(tmp_path)) is None


def test_seal_and_publish_is_atomic_rename(tmp_path):
    tmp = _fake_checkpoint(tmp_path, 3, sealed=False, tmp=True)
    uri = ckpt.seal_and_publish(tmp_path, 3, str(tmp_path))
    assert not tmp.exists() and uri == str(tmp_path / "checkpoints" / "step-000003")
    assert (
        storage.is_complete(uri)
        and ckpt.read_trainer_state(tmp_path / "checkpoints" / "step-000003")["step"] == 3
    )


def test_retention_keeps_last_k_and_clears_stale_tmp(tmp_path):
    for step in (2, 4, 6, 8):
        _fake_checkpoint(tmp_path, step)
    _fake_checkpoint(tmp_path, 10, sealed=False, tmp=True)
    removed = ckpt.apply_retention(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == [".tmp-step-000010", "step-000002", "step-000004"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000006", "step-000008"]


def test_explicit_resume_of_incomplete_checkpoint_is_refused(tmp_path):
    path = _fake_checkpoint(tmp_path, 5, sealed=False)
    with pytest.raises(storage.IncompleteArtifactError, match="step-000005: checkpoint has no MANIFEST.json"):
        ckpt.materialize(str(path), tmp_path)
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        ckpt.materialize(str(tmp_path / "missing"), tmp_path)


def test_s3_publish_find_and_download(s3_env, tmp_path):
    out = f"{s3_env}/run/pretrain"
    local = ckpt.local_root_for(out)
    assert local == ckpt.local_root_for(out) and local != ckpt.local_root_for(out + "x")  # stable per URI
    root = tmp_path / "writer"
    _fake_checkpoint(root, 2, sealed=False, tmp=True)
    uri = ckpt.seal_and_publish(root, 2, out)
    assert uri == f"{out}/checkpoints/step-000002" and storage.is_complete(uri)
    # an unsealed remote upload of a later step (killed mid put_dir) is ignored
    storage.write_text(f"{out}/checkpoints/step-000004/{ckpt.TRAINER_STATE}", '{"step": 4}')
    assert ckpt.find_latest(out) == uri
    restored = ckpt.materialize(uri, tmp_path / "reader")
    assert ckpt.read_trainer_state(restored)["step"] == 2
