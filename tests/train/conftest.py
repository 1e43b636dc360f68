"""Fixtures for the trainer tests: a real tokenizer, packed shards and SFT rows in the documented
formats, and a RunConfig small enough that a DeepSpeed run takes seconds of compute.

Data is built the way the data stage builds it: the packed shards by ``diffucoder.data.pack`` from
CPython stdlib source, the SFT rows by ``diffucoder.data.formats`` from generated tiny tasks.
"""

from __future__ import annotations

import inspect
import json
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from train_helpers import SEQ_LEN


@pytest.fixture(scope="session")
def corpus_texts() -> list[str]:
    import argparse
    import json.decoder
    import json.encoder

    return [inspect.getsource(m) for m in (json.decoder, json.encoder, textwrap, argparse)]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, corpus_texts) -> str:
    from diffucoder.data.tokenizer import save_tokenizer, train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(train_tokenizer(corpus_texts, vocab_size=512), str(out))
    return str(out)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from diffucoder.data.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def packed_dir(tmp_path_factory, corpus_texts, tokenizer_dir) -> str:
    """Packed shards (seq_len 32, 3 shards) written by the data stage's own packer."""
    from diffucoder.data.pack import pack_shards

    root = tmp_path_factory.mktemp("packed")
    text_shard = root / "text" / "shard-00000.parquet"
    text_shard.parent.mkdir()
    pq.write_table(pa.table({"text": corpus_texts}), text_shard)
    pack_shards([str(text_shard)], tokenizer_dir, SEQ_LEN, str(root / "packed"), rows_per_shard=400)
    return str(root / "packed")


@pytest.fixture(scope="session")
def sft_file(tmp_path_factory) -> str:
    """Stage-3 rows from the data stage's tiny tasks (real chat format)."""
    from diffucoder.data.formats import tasks_to_sft
    from diffucoder.data.tiny_tasks import generate_tasks

    tasks = generate_tasks(0, 64, 4, 2, 0.15)["train"]
    path = tmp_path_factory.mktemp("sft") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tasks_to_sft(tasks)))
    return str(path)
