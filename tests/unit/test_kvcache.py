"""The bookkeeping of saved KV states (backends/kvcache.py): longest-prefix lookup,
least-recently-used eviction within the byte bound, and states that extend others."""

from __future__ import annotations

from lsp_server.backends.kvcache import KvSnapshots, common_prefix


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5], [6]) == 0


def test_common_prefix_is_the_plain_loops_on_random_sequences() -> None:
    """The slice-and-halve search against a token-by-token loop, on lists and tuples of
    every length around its first window (64) and doubling steps."""
    import random

    def plain(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> int:
        for index in range(min(len(a), len(b))):
            if a[index] != b[index]:
                return index
        return min(len(a), len(b))

    rng = random.Random(7)
    for _ in range(3000):
        a = [rng.randrange(3) for _ in range(rng.randrange(0, 400))]
        b = a[: rng.randrange(0, len(a) + 1)] + [rng.randrange(3) for _ in range(rng.randrange(0, 40))]
        first: list[int] | tuple[int, ...] = tuple(a) if rng.random() < 0.3 else a
        assert common_prefix(first, b) == common_prefix(b, first) == plain(list(first), b)


def test_best_is_the_longest_shared_prefix() -> None:
    cache = KvSnapshots(limit_bytes=1000)
    assert cache.best([1, 2, 3]) == (None, 0)
    cache.add([1, 2, 9, 9], bytearray(10))
    cache.add([1, 2, 3, 4, 7], bytearray(10))
    found, length = cache.best([1, 2, 3, 4, 5])
    assert found is not None and found.tokens == (1, 2, 3, 4, 7) and length == 4


def test_eviction_keeps_the_bound_and_drops_the_least_recently_used() -> None:
    cache = KvSnapshots(limit_bytes=100)
    for first in range(6):
        assert cache.add([first, 1, 2], bytearray(30))
        assert cache.bytes <= 100
    assert len(cache) == 3 and cache.evictions == 3
    # Using the oldest makes it the most recent: the next add evicts another one.
    oldest, _ = cache.best([3, 1, 2])
    assert oldest is not None
    cache.used(oldest, 3)
    cache.add([9, 1, 2], bytearray(30))
    assert cache.best([3, 1, 2])[1] == 3
    assert cache.best([4, 1, 2])[1] == 0
    assert cache.stats()["entries"] == 3 and cache.stats()["restores"] == 1


def test_too_large_or_covered_states_are_not_kept() -> None:
    cache = KvSnapshots(limit_bytes=50)
    assert not cache.add([1, 2], bytearray(51))
    assert cache.add([1, 2, 3], bytearray(10))
    assert not cache.add([1, 2], bytearray(10))  # covered by the longer one
    assert cache.add([1, 2, 3, 4], bytearray(10))  # extends it: replaces it
    assert len(cache) == 1 and cache.bytes == 10


def test_resize_evicts_and_zero_keeps_nothing() -> None:
    cache = KvSnapshots(limit_bytes=100)
    cache.add([1], bytearray(40))
    cache.add([2], bytearray(40))
    cache.resize(50)
    assert len(cache) == 1 and cache.bytes == 40 and cache.best([2])[1] == 1
    cache.resize(0)
    assert len(cache) == 0 and cache.bytes == 0
    assert not cache.add([3], bytearray(1))
