"""LR schedule: linear warmup, cosine to min_lr_ratio of the peak (paper §B.1, Table 3)."""

from __future__ import annotations

import math

import pytest
import torch

from diffucoder.train.schedule import build_scheduler, lr_factor


def test_warmup_is_linear_and_reaches_peak():
    assert [lr_factor(s, 4, 20, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 20, 0.1) == 1.0  # first decay step starts at the peak


def test_cosine_ends_at_floor_and_is_monotone():
    values = [lr_factor(s, 4, 20, 0.1) for s in range(4, 21)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == pytest.approx(0.1)
    assert lr_factor(12, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(100, 4, 20, 0.1) == pytest.approx(0.1)  # past the end stays at the floor


def test_no_warmup():
    assert lr_factor(0, 0, 10, 0.1) == 1.0


def test_scheduler_drives_optimizer_lr():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=2.0)
    sched = build_scheduler(opt, warmup_steps=2, total_steps=10, min_ratio=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == [1.0, 2.0]
    assert lrs[-1] == pytest.approx(2.0 * lr_factor(9, 2, 10, 0.1))
