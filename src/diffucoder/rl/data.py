"""The stage-4 problem set: rows ``{"id", "question", "test_cases", "entry_point", "pass_rates"}``.

Read from a JSONL or Parquet file (local or s3://, docs/interfaces.md "RL set"); a bad row raises
naming the file, the row and the field. :class:`ProblemSource` exposes the rows to the trainer's
:class:`~diffucoder.train.batches.BatchStream` (deterministic, rank-sharded, resumable order) as
row indices, since the stream stacks numeric arrays and problems are text.
"""

from __future__ import annotations

import io as _io
import json

import numpy as np

from diffucoder import storage
from diffucoder.rl.rollout import Problem
from diffucoder.train.batches import epoch_rng


def _rows(uri: str) -> list[dict]:
    data = storage.read_bytes(uri)
    if uri.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(_io.BytesIO(data)).to_pylist()
    rows = []
    for line_no, line in enumerate(data.decode().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{uri}: line {line_no}: not valid JSON: {exc}") from exc
    return rows


def load_problems(uri: str) -> list[Problem]:
    """Problems of an RL set file.

    Raises:
        FileNotFoundError: no such file; ValueError: empty set or a row missing/mistyping a field.
    """
    if not storage.exists(uri):
        raise FileNotFoundError(
            f"--data {uri}: no such RL problem file (JSONL/Parquet rows with question, test_cases)"
        )
    problems = []
    for i, row in enumerate(_rows(uri)):
        where = f"{uri}: row {i}"
        question, tests = row.get("question"), row.get("test_cases")
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{where}: field 'question' missing or empty")
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise ValueError(
                f"{where}: field 'test_cases' must be a non-empty list of assert strings, got {tests!r}"
            )
        problems.append(Problem(str(row.get("id", i)), question, list(tests), row.get("entry_point")))
    if not problems:
        raise ValueError(f"{uri}: the RL problem set is empty")
    return problems


class ProblemSource:
    """Problems as a ``SampleSource``: ``get(i)`` yields the row index, the trainer looks the problem up."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems

    def __len__(self) -> int:
        return len(self.problems)

    def order(self, epoch: int, seed: int) -> np.ndarray:
        return epoch_rng(seed, epoch, 4).permutation(len(self.problems))

    def get(self, index: int) -> dict[str, np.ndarray]:
        return {"index": np.array([index], dtype=np.int64)}
