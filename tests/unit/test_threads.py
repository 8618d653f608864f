"""The thread governor (backends/threads.py): pure, fed with per-token times and the
share of each generation its decoding thread waited for a core."""

from __future__ import annotations

import pytest

from lsp_server.backends.threads import (
    MIN_TOKENS,
    PROBE_EVERY,
    PROBE_FIRST,
    ThreadGovernor,
    levels_for,
    run_queue_wait_ns,
)

# (seconds a token, share of the time waiting for a core) at each thread count
QUIET = {2: (0.006, 0.0), 1: (0.007, 0.0)}  # one thread less is a little slower
BUSY = {2: (0.030, 0.4), 1: (0.007, 0.0)}  # another program on one core


def run(governor: ThreadGovernor, machine: dict[int, tuple[float, float | None]], generations: int) -> list[int]:
    """``generations`` of 20 tokens on ``machine``; the level each ran with."""
    used = []
    for _ in range(generations):
        level = governor.level()
        used.append(level)
        per_token, waiting = machine[level]
        governor.observe(level, 20, 20 * per_token, waiting)
    return used


@pytest.mark.parametrize(("configured", "levels"), [(1, (1,)), (2, (2, 1)), (6, (6, 3, 1)), (8, (8, 4, 2, 1))])
def test_levels_halve_down_to_one(configured: int, levels: tuple[int, ...]) -> None:
    assert levels_for(configured) == levels


def test_a_quiet_machine_never_changes_the_count() -> None:
    """Not even to try: another count rounds differently, and greedy text must not move."""
    governor = ThreadGovernor(2)
    assert run(governor, QUIET, 100) == [2] * 100
    assert governor.switches == 0 and set(governor.recent) == {2}


def test_contention_moves_down_at_once_and_free_cores_bring_it_back() -> None:
    governor = ThreadGovernor(2)
    run(governor, QUIET, 10)
    used = run(governor, BUSY, 40)
    assert used[:3] == [2, 1, 1]  # one slow generation, one at one thread, kept
    assert governor.current == 1
    # Below the configured count, a probe PROBE_FIRST generations after moving down, then
    # twice as many after each that lost, up to every PROBE_EVERY.
    probes = [index for index, level in enumerate(used) if index >= 2 and level == 2]
    gaps = [later - earlier - 1 for earlier, later in zip([1, *probes], probes)]
    assert gaps[:4] == [PROBE_FIRST, 2 * PROBE_FIRST, 4 * PROBE_FIRST, PROBE_EVERY] and set(gaps[3:]) == {PROBE_EVERY}
    used = run(governor, QUIET, 2 * PROBE_EVERY)
    assert governor.current == 2  # the first probe found the cores free
    assert used[-PROBE_EVERY:] == [2] * PROBE_EVERY
    assert governor.switches == 2


def test_a_moment_of_contention_costs_a_few_generations_at_fewer_threads() -> None:
    """A build step or a browser tab takes a core for a moment: the count comes back
    PROBE_FIRST generations after it moved down, not PROBE_EVERY (a thread less
    evaluates prompts at half the rate)."""
    governor = ThreadGovernor(2)
    run(governor, QUIET, 5)
    assert run(governor, BUSY, 2) == [2, 1]
    used = run(governor, QUIET, PROBE_FIRST + 3)
    assert used == [1] * PROBE_FIRST + [2, 2, 2] and governor.current == 2
    # Moving down again starts the short wait again.
    assert run(governor, BUSY, 2) == [2, 1]
    assert run(governor, QUIET, PROBE_FIRST + 1)[-1] == 2


def test_contention_from_the_first_generation_is_seen() -> None:
    governor = ThreadGovernor(2)
    used = run(governor, BUSY, 20)
    assert used[:2] == [2, 1] and governor.current == 1


def test_without_the_wait_a_slow_spell_is_the_signal() -> None:
    governor = ThreadGovernor(2)
    no_wait = {level: (per_token, None) for level, (per_token, _) in QUIET.items()}
    busy = {level: (per_token, None) for level, (per_token, _) in BUSY.items()}
    run(governor, no_wait, 5)
    used = run(governor, busy, 3)
    assert used == [2, 1, 1]  # 5 times its best: one generation lower, kept


def test_a_lower_count_that_is_no_faster_is_not_kept_nor_retried_at_once() -> None:
    governor = ThreadGovernor(2)
    both_wait = {2: (0.010, 0.5), 1: (0.011, 0.5)}  # every core taken: fewer threads do not help
    used = run(governor, both_wait, 2 + PROBE_EVERY + 1)
    assert used[:3] == [2, 1, 2] and governor.current == 2
    assert used[2:2 + PROBE_EVERY] == [2] * PROBE_EVERY  # the cooldown
    assert used[2 + PROBE_EVERY] == 1  # then tried again


def test_noise_within_the_margin_does_not_move_it() -> None:
    governor = ThreadGovernor(2)
    run(governor, QUIET, 10)
    for per_token in (0.0075, 0.006, 0.0080, 0.0065, 0.0078):
        governor.observe(governor.level(), 20, 20 * per_token, 0.02)
    assert governor.current == 2 and governor.switches == 0


def test_many_cores_step_down_while_the_decoding_thread_still_waits() -> None:
    governor = ThreadGovernor(8)
    machine = {8: (0.040, 0.6), 4: (0.012, 0.3), 2: (0.008, 0.0), 1: (0.009, 0.0)}  # half the cores taken
    used = run(governor, machine, 12)
    assert used[:5] == [8, 4, 4, 2, 2]
    assert governor.current == 2 and 1 not in used


def test_short_generations_and_unknown_levels_are_not_observations() -> None:
    governor = ThreadGovernor(2)
    governor.observe(2, MIN_TOKENS - 1, 1.0, 0.9)
    governor.observe(3, 20, 1.0, 0.9)
    governor.observe(2, 20, 0.0, 0.9)
    assert governor.observations == 0 and governor.recent == {} and governor.level() == 2


def test_stats_say_what_is_in_use() -> None:
    governor = ThreadGovernor(2)
    run(governor, BUSY, 6)
    stats = governor.stats()
    assert stats["configured"] == 2 and stats["inUse"] == 1 and stats["switches"] == 1
    assert stats["msPerToken"] == {"1": 7.0, "2": 30.0}


def test_the_wait_is_read_where_linux_has_it() -> None:
    waited = run_queue_wait_ns()
    if waited is None:
        pytest.skip("no /proc/thread-self/schedstat here")
    assert waited >= 0 and run_queue_wait_ns() >= waited  # type: ignore[operator]


def test_a_slower_generation_without_a_wait_does_not_move_it_down() -> None:
    """After a contended spell one thread is known to be fast; a long-context generation
    at two threads on the quiet machine again is slower a token, but nothing waited."""
    governor = ThreadGovernor(2)
    run(governor, BUSY, 5)
    run(governor, QUIET, 2 * PROBE_EVERY)
    assert governor.current == 2
    governor.observe(2, 20, 20 * 0.012, 0.0)  # 1.7 x one thread's time a token
    assert governor.level() == 2 and governor.current == 2
