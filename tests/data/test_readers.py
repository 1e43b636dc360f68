"""Readers: Parquet and HF `datasets` saved dirs, dispatch, and clear errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diffucoder.data.config import ReaderConfig
from diffucoder.data.readers import SkipLog, input_units, read_unit


def test_parquet_rows_and_missing_text(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "content": ["x = 1\n", None], "path": ["a.py", "b.py"]}), path)
    skips = SkipLog()
    docs = list(read_unit(str(path), ReaderConfig(), skips))
    assert [(d["id"], d["text"], d["lang"]) for d in docs] == [("a", "x = 1\n", "python")]
    assert skips.counts == {"bad_field:content": 1}
    assert skips.examples["bad_field:content"][0].startswith(f"{path}#row1")


def test_hf_saved_dataset_dir(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"text": ["a = 1\n", "b = 2\n"], "id": ["r0", "r1"], "license": ["MIT", "MIT"]}
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    assert input_units(str(tmp_path / "hf")) == [str(tmp_path / "hf")]
    docs = list(read_unit(str(tmp_path / "hf"), ReaderConfig(), SkipLog()))
    assert [(d["id"], d["license"]) for d in docs] == [("r0", "MIT"), ("r1", "MIT")]


def test_dir_of_jsonl_files_is_one_unit_per_file(tmp_path):
    for name in ("b.jsonl", "a.jsonl"):
        (tmp_path / name).write_text('{"text": "x = 1"}\n')
    (tmp_path / "notes.txt").write_text("ignored")
    assert input_units(str(tmp_path)) == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]


def test_unknown_input_is_a_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"x.csv: not a JSONL/Parquet file"):
        list(read_unit(str(tmp_path / "x.csv"), ReaderConfig(), SkipLog()))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        list(read_unit(str(tmp_path / "nope.jsonl"), ReaderConfig(), SkipLog()))
