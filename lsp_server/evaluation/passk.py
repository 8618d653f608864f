"""pass@k with the unbiased estimator of the Codex paper (Chen et al., 2021).

With ``n`` samples of which ``c`` pass, the probability that at least one of ``k``
samples drawn without replacement passes is ``1 - C(n-c, k) / C(n, k)``. The binomials
overflow quickly, so it is computed as the product
``1 - prod_{i=n-c+1}^{n} (1 - k / i)``, which stays in floating point range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them correct."""
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 and k >= 1, got n={n}, k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given as ``(n, c)`` pairs."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no problems to average over")
    return sum(values) / len(values)


def pass_at_ks(counts: Mapping[str, tuple[int, int]], ks: Sequence[int]) -> dict[int, float]:
    """pass@k for every ``k`` that every problem has enough samples for."""
    if not counts:
        return {}
    least = min(n for n, _ in counts.values())
    return {k: mean_pass_at_k(counts.values(), k) for k in sorted(set(ks)) if k <= least}
