"""Dream's floor-based unmask schedule (``generation_utils.py``): step counts worked out by hand from its
formula (k = int(M * (1 - t_next / t)), everything left at the last step)."""

from __future__ import annotations

import pytest

from diffucoder.decoding.schedule import unmask_schedule


def test_256_tokens_in_256_steps():
    assert unmask_schedule(256, 256) == [0] + [1] * 254 + [2]


def test_256_tokens_in_128_steps():
    assert unmask_schedule(256, 128) == [1] + [2] * 126 + [3]


def test_256_tokens_in_64_steps():
    assert unmask_schedule(256, 64) == [3] + [4] * 62 + [5]


@pytest.mark.parametrize(("length", "steps"), [(512, 512), (512, 256), (32, 32), (37, 5), (8, 20), (1, 1)])
def test_every_token_is_unmasked_exactly_once(length, steps):
    counts = unmask_schedule(length, steps)
    assert len(counts) == steps
    assert sum(counts) == length
    assert min(counts) >= 0


def test_512_in_512_has_the_same_quirk():
    counts = unmask_schedule(512, 512)
    assert counts[0] == 0 and counts[-1] == 2 and set(counts[1:-1]) == {1}


def test_zero_steps_is_rejected():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        unmask_schedule(8, 0)
