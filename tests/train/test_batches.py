"""BatchStream: deterministic per seed, disjoint across ranks, resumable mid-epoch."""

from __future__ import annotations

import numpy as np
import pytest

from diffucoder.train.batches import BatchStream, epoch_rng


class Numbers:
    """A source whose sample i is just [i]: makes orders easy to read."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def order(self, epoch, seed):
        return epoch_rng(seed, epoch).permutation(self.n)

    def get(self, index):
        return {"input_ids": np.array([index])}


def _take(stream, k):
    return [stream.next_batch()["input_ids"][:, 0].tolist() for _ in range(k)]


def test_same_seed_same_order_other_seed_differs():
    a = _take(BatchStream(Numbers(20), 2, 0, 1, seed=7), 5)
    b = _take(BatchStream(Numbers(20), 2, 0, 1, seed=7), 5)
    c = _take(BatchStream(Numbers(20), 2, 0, 1, seed=8), 5)
    assert a == b and a != c


def test_ranks_split_each_global_batch_disjointly():
    ranks = [BatchStream(Numbers(24), 3, r, 2, seed=0) for r in range(2)]
    single = BatchStream(Numbers(24), 6, 0, 1, seed=0)
    for _ in range(4):
        r0, r1 = (s.next_batch()["input_ids"][:, 0].tolist() for s in ranks)
        assert not set(r0) & set(r1)
        assert (
            r0 + r1 == single.next_batch()["input_ids"][:, 0].tolist()
        )  # same global batch at any world size


def test_epoch_covers_every_usable_sample_once_then_reshuffles():
    stream = BatchStream(Numbers(10), 3, 0, 1, seed=0)
    first = sum(_take(stream, 3), [])
    assert len(set(first)) == 9  # tail of 1 skipped
    second = sum(_take(stream, 3), [])
    assert stream.epoch == 1 and first != second


def test_resume_continues_with_the_next_batch():
    full = BatchStream(Numbers(30), 4, 1, 2, seed=3)
    expected = _take(full, 9)
    part = BatchStream(Numbers(30), 4, 1, 2, seed=3)
    _take(part, 4)
    state = part.state_dict()
    resumed = BatchStream(Numbers(30), 4, 1, 2, seed=3)
    resumed.load_state_dict(state)
    assert _take(resumed, 5) == expected[4:]


def test_progress_and_seed_guard():
    stream = BatchStream(Numbers(8), 2, 0, 1, seed=0)
    _take(stream, 2)
    assert stream.progress == 0.5 and stream.batch_progress == 0.25
    with pytest.raises(ValueError, match="seed 0"):
        BatchStream(Numbers(8), 2, 0, 1, seed=1).load_state_dict(stream.state_dict())


def test_too_little_data_for_one_global_batch():
    with pytest.raises(ValueError, match="fewer than one global micro-batch"):
        BatchStream(Numbers(3), 2, 0, 2, seed=0)
