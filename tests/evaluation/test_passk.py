"""pass@k against the closed form 1 - C(n-c, k)/C(n, k) on hand-worked cases."""

from math import comb

import pytest

from diffucoder.evaluation.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (10, 3, 1, 0.3),  # pass@1 is the plain fraction of correct samples
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 4, 1.0),  # only 3 failures: every 4-subset holds a pass
        (10, 0, 5, 0.0),
    ],
)
def test_hand_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 20, 200])
def test_matches_binomial_closed_form(n):
    for c in range(n + 1):
        for k in {1, 2, 5, 10, n} & set(range(1, n + 1)):
            closed = 1 - comb(n - c, k) / comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(closed, rel=1e-9, abs=1e-12)


def test_mean_over_problems():
    assert mean_pass_at_k([(2, 2), (2, 0), (2, 1)], 1) == pytest.approx(0.5)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, 1, 4), (3, 1, 0), (0, 0, 1)])
def test_rejects_inconsistent_counts(n, c, k):
    with pytest.raises(ValueError, match=f"n={n}, c={c}, k={k}"):
        pass_at_k(n, c, k)
