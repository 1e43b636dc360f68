"""FLOPs-per-token and MFU formulas used by the benchmark and GPU runs."""

from __future__ import annotations

import pytest

from diffucoder.train.flops import flops_per_token, mfu


def test_flops_and_mfu():
    # 7B-like: 6N dominates; attention term 12 * 28 * 3584 * 4096
    f = flops_per_token(7_000_000_000, 28, 3584, 4096)
    assert f == 6 * 7e9 + 12 * 28 * 3584 * 4096
    assert mfu(1000.0, 1e9, 2, 1e12) == 0.5
    with pytest.raises(ValueError, match="n_devices"):
        mfu(1.0, 1.0, 0, 1.0)
