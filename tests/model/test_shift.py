"""logits_at_positions: out[:, j] is the prediction for token j (from hidden state j - 1)."""

from __future__ import annotations

import pytest
import torch

from diffucoder.model.shift import logits_at_positions


def test_right_shift_by_one_position_zero_reuses_itself():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    out = logits_at_positions(logits)
    assert out.shape == logits.shape
    torch.testing.assert_close(out[:, 0], logits[:, 0])
    for j in range(1, 4):
        torch.testing.assert_close(out[:, j], logits[:, j - 1])


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        logits_at_positions(torch.zeros(4, 3))
