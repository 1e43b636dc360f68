"""Stdlib corpus (provenance, skips), the mid-train mix and packing."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from diffucoder.data.config import TinyTasksConfig
from diffucoder.data.corpus import build_midtrain_mix, build_stdlib_corpus, stdlib_root
from diffucoder.data.formats import write_tiny_task_sets
from diffucoder.data.io import read_text_shard
from diffucoder.data.pack import pack_shards
from diffucoder.data.tokenizer import load_tokenizer


def test_stdlib_corpus_keeps_provenance_and_counts_skips(tmp_path, data_cfg):
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "good.py").write_text("x = 1\n")
    (root / "pkg" / "bin.py").write_bytes(b"\x00\x01\x02")
    (root / "latin.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (root / "big.py").write_text("y = 2\n" * 10)
    cfg = data_cfg.model_copy(update={"reader": data_cfg.reader.model_copy(update={"max_file_bytes": 40})})
    stats = build_stdlib_corpus(str(tmp_path / "out"), cfg, root=root)
    docs = read_text_shard(str(tmp_path / "out" / "shard-00000.parquet"))
    assert [d["path"] for d in docs] == ["good.py"]
    assert docs[0]["license"] == "PSF-2.0" and docs[0]["sha256"] == hashlib.sha256(b"x = 1\n").hexdigest()
    assert stats["skipped"]["counts"] == {"binary": 1, "non_utf8": 1, "oversize": 1}
    assert any("bin.py" in e for e in stats["skipped"]["examples"]["binary"])
    assert (tmp_path / "out" / "MANIFEST.json").is_file()


def test_real_stdlib_subset(tmp_path, data_cfg):
    stats = build_stdlib_corpus(str(tmp_path / "c"), data_cfg, max_files=60)
    docs = read_text_shard(str(tmp_path / "c" / "shard-00000.parquet"))
    assert stats["files"] == len(docs) == 60
    first = docs[0]
    assert (stdlib_root() / first["path"]).read_text(encoding="utf-8") == first["text"]
    assert first["source"].startswith("cpython-stdlib-") and first["lang"] == "python"


def test_midtrain_mix_has_corpus_and_train_tasks_only(tmp_path, data_cfg):
    build_stdlib_corpus(str(tmp_path / "c"), data_cfg, max_files=30)
    write_tiny_task_sets(str(tmp_path / "t"), TinyTasksConfig(n_train=50, n_heldout=10, n_rl=20))
    stats = build_midtrain_mix(
        [str(tmp_path / "c" / "shard-00000.parquet")],
        str(tmp_path / "t" / "train.jsonl"),
        str(tmp_path / "m"),
        data_cfg,
    )
    assert stats["corpus_docs"] == 30 and stats["task_docs"] == 50
    docs = read_text_shard(str(tmp_path / "m" / "shard-00000.parquet"))
    sources = {d["source"] for d in docs}
    assert "tiny-tasks-train" in sources and any(s.startswith("cpython-stdlib-") for s in sources)
    assert len(sources) == 2
    with pytest.raises(ValueError, match="must never enter"):
        build_midtrain_mix([], str(tmp_path / "t" / "heldout.jsonl"), str(tmp_path / "m2"), data_cfg)


def test_pack_rows_are_exact_and_deterministic(tmp_path, data_cfg, tiny_tokenizer_dir):
    build_stdlib_corpus(str(tmp_path / "c"), data_cfg.model_copy(update={"shard_docs": 7}), max_files=20)
    shards = sorted(str(p) for p in (tmp_path / "c").glob("shard-*.parquet"))
    assert len(shards) == 3
    meta = pack_shards(shards, tiny_tokenizer_dir, 128, str(tmp_path / "p1"), rows_per_shard=50)
    pack_shards(shards, tiny_tokenizer_dir, 128, str(tmp_path / "p2"), rows_per_shard=50)
    rows = [
        r for s in meta["shards"] for r in pq.read_table(tmp_path / "p1" / s).column("input_ids").to_pylist()
    ]
    assert len(rows) == meta["rows"] and all(len(r) == 128 for r in rows)
    assert meta["tokens"] == meta["rows"] * 128 + meta["dropped_tail_tokens"]
    for s in meta["shards"]:
        assert (tmp_path / "p1" / s).read_bytes() == (tmp_path / "p2" / s).read_bytes()
    # the stream is the documents, each tokenised as the transformers call does it and followed by
    # eos, in shard/row order
    tok = load_tokenizer(tiny_tokenizer_dir)
    docs = [row["text"] for shard in shards for row in read_text_shard(shard) if row["text"]]
    ids = [i for doc in docs for i in tok(doc, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]
    flat = [i for r in rows for i in r]
    assert flat == ids[: len(flat)] and len(ids) - len(flat) == meta["dropped_tail_tokens"]
    assert json.loads((tmp_path / "p1" / "meta.json").read_text())["seq_len"] == 128
