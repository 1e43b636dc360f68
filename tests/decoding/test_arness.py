"""AR-ness on constructed traces, against values derived by hand (paper §4.1, App. A.2).

Convention under test: the prompt counts as left-to-right decoded history (virtual positions
-1, -2, ...), and both metrics divide by T, so strictly left-to-right scores 1.0 for every k.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffucoder.decoding.arness import arness_summary, decode_order, global_arness, local_arness


def trace_of(order: list[int]) -> torch.Tensor:
    """The trace (step per position) of decoding the positions in ``order``, one per step."""
    trace = torch.empty(len(order), dtype=torch.long)
    trace[torch.tensor(order)] = torch.arange(len(order))
    return trace


@pytest.mark.parametrize("k", range(1, 10))
def test_left_to_right_is_fully_ar(k):
    trace = trace_of(list(range(12)))
    assert local_arness(trace, k).item() == 1.0
    assert global_arness(trace, k).item() == 1.0


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_right_to_left(k):
    # local: each step's predecessor is the position to its RIGHT (p+1), never p-1; step 1 decodes
    # position L-1, not 0 -> 0 for every k.
    # global: before step t the masked set is {0..L-t}; p_t = L-t is among its k smallest only in the
    # last k steps -> k / L.
    length = 10
    trace = trace_of(list(range(length - 1, -1, -1)))
    assert local_arness(trace, k).item() == 0.0
    assert global_arness(trace, k).item() == pytest.approx(k / length)


def test_a_scrambled_order_by_hand():
    # order 2,0,1,5,3,4 (L = 6), history ... -2, -1:
    # t  p  prev  local@1  local@2  masked before     rank  global@1 @2 @3
    # 1  2  -1    0        0        {0..5}            2     0        0  1
    # 2  0   2    0        0        {0,1,3,4,5}       0     1        1  1
    # 3  1   0    1        0 (pp=2) {1,3,4,5}         0     1        1  1
    # 4  5   1    0        0        {3,4,5}           2     0        0  1
    # 5  3   5    0        0        {3,4}             0     1        1  1
    # 6  4   3    1        0 (pp=5) {4}               0     1        1  1
    trace = trace_of([2, 0, 1, 5, 3, 4])
    assert local_arness(trace, 1).item() == pytest.approx(2 / 6)
    assert local_arness(trace, 2).item() == 0.0
    assert global_arness(trace, 1).item() == pytest.approx(4 / 6)
    assert global_arness(trace, 2).item() == pytest.approx(4 / 6)
    assert global_arness(trace, 3).item() == 1.0


def test_first_step_counts_only_when_it_continues_the_prompt():
    # order 0,2,1,3: t1 p=0 continues the prompt (local@1,@2 hit); t2 p=2 no; t3 p=1 prev 2 no;
    # t4 p=3 prev 1 no -> local@1 = 1/4.  global@1: t1 0 first mask yes; t2 2 vs {1,2,3} no;
    # t3 1 yes; t4 3 yes -> 3/4.
    trace = trace_of([0, 2, 1, 3])
    assert local_arness(trace, 1).item() == pytest.approx(1 / 4)
    assert local_arness(trace, 2).item() == pytest.approx(1 / 4)
    assert global_arness(trace, 1).item() == pytest.approx(3 / 4)


def test_uniformly_random_orders_match_the_expected_global_at_1():
    # for a uniformly random order, step t picks uniformly among the L-t+1 masked positions, so
    # E[global@1] = (1/L) * sum_t 1/(L-t+1) = H_L / L. local@1 needs p_{t-1} = p_t - 1, which a
    # random order rarely gives; we only check that it is small.
    length, n = 16, 4000
    g = torch.Generator().manual_seed(0)
    traces = torch.stack([trace_of(torch.randperm(length, generator=g).tolist()) for _ in range(n)])
    harmonic = sum(1 / i for i in range(1, length + 1))
    assert global_arness(traces, 1).mean().item() == pytest.approx(harmonic / length, abs=0.01)
    assert local_arness(traces, 1).mean().item() < 0.15


def test_batched_traces_give_per_sequence_values_and_monotone_curves():
    traces = torch.stack([trace_of([2, 0, 1, 5, 3, 4]), trace_of(list(range(6)))])
    assert local_arness(traces, 1).tolist() == pytest.approx([2 / 6, 1.0])
    summary = arness_summary(traces)
    locals_ = [summary[f"local@{k}"] for k in range(1, 10)]
    globals_ = [summary[f"global@{k}"] for k in range(1, 5)]
    assert locals_ == sorted(locals_, reverse=True)
    assert globals_ == sorted(globals_)
    assert summary["global@1_std"] == pytest.approx(math.sqrt(((4 / 6 - 5 / 6) ** 2 + (1 - 5 / 6) ** 2) / 2))


def test_multi_token_steps_read_left_to_right():
    # two tokens per step, block-wise left to right: the same as strict left to right
    trace = torch.tensor([0, 0, 1, 1, 2, 2])
    assert decode_order(trace).tolist() == [0, 1, 2, 3, 4, 5]
    assert local_arness(trace, 3).item() == 1.0


def test_untouched_positions_are_rejected():
    with pytest.raises(ValueError, match="never unmasked"):
        local_arness(torch.tensor([0, -1, 1]), 1)
