"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

With n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the probability that a random
k-subset of the n samples holds at least one passing sample. The ratio is computed as a running
product (1 - k/i for i = n-c+1 .. n) so large n never overflows or loses precision in the binomials.
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them correct.

    Raises:
        ValueError: when the counts are inconsistent (c > n, k > n, or any negative / k < 1).
    """
    if n < 1 or k < 1 or c < 0 or c > n or k > n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Benchmark pass@k: the mean over problems of :func:`pass_at_k` for (n, c) pairs."""
    if not counts:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
