"""The thread governor (backends/threads.py): pure, fed with per-token times."""

from __future__ import annotations

import pytest

from lsp_server.backends.threads import (
    CALIBRATE_AT,
    MIN_TOKENS,
    PROBE_EVERY,
    ThreadGovernor,
    levels_for,
)

QUIET = {2: 0.006, 1: 0.007}  # seconds a token: one thread less is a little slower
BUSY = {2: 0.030, 1: 0.007}  # another program on one core: two threads wait at barriers


def run(governor: ThreadGovernor, speeds: dict[int, float], generations: int) -> list[int]:
    """``generations`` of 20 tokens at ``speeds``; the level each ran with."""
    used = []
    for _ in range(generations):
        level = governor.level()
        used.append(level)
        governor.observe(level, 20, 20 * speeds[level])
    return used


@pytest.mark.parametrize(("configured", "levels"), [(1, (1,)), (2, (2, 1)), (6, (6, 3, 1)), (8, (8, 4, 2, 1))])
def test_levels_halve_down_to_one(configured: int, levels: tuple[int, ...]) -> None:
    assert levels_for(configured) == levels


def test_a_quiet_machine_keeps_every_thread_after_one_calibration() -> None:
    governor = ThreadGovernor(2)
    used = run(governor, QUIET, 60)
    assert used.count(1) == 1 and used[CALIBRATE_AT] == 1  # the one calibration run
    assert used[-50:] == [2] * 50
    assert governor.current == 2 and governor.switches == 0


def test_contention_moves_down_at_once_and_the_free_cores_bring_it_back() -> None:
    governor = ThreadGovernor(2)
    run(governor, QUIET, 10)
    used = run(governor, BUSY, 30)
    assert used[0] == 2 and used[1] == 1  # one slow generation, then one thread
    assert governor.current == 1
    # Below the configured count, a probe every PROBE_EVERY generations; each is slow.
    assert used[1:].count(2) == (len(used) - 1) // (PROBE_EVERY + 1)
    used = run(governor, QUIET, 2 * PROBE_EVERY)
    assert governor.current == 2  # the first probe found the cores free
    assert used[-PROBE_EVERY:] == [2] * PROBE_EVERY
    assert governor.switches == 2


def test_contention_from_the_start_is_found_by_the_calibration() -> None:
    governor = ThreadGovernor(2)
    used = run(governor, BUSY, 20)
    assert used[:CALIBRATE_AT + 1] == [2] * CALIBRATE_AT + [1]
    assert governor.current == 1
    assert used[CALIBRATE_AT + 1 :].count(2) == 1  # the one probe since


def test_a_slow_spell_before_the_calibration_tries_one_level_lower() -> None:
    governor = ThreadGovernor(2)
    run(governor, QUIET, 1)
    used = run(governor, BUSY, 3)
    assert used == [2, 1, 1]  # slower than twice its best: one generation lower, kept


def test_noise_within_the_margin_does_not_move_it() -> None:
    governor = ThreadGovernor(2)
    run(governor, QUIET, 10)
    for per_token in (0.0075, 0.006, 0.0080, 0.0065, 0.0078):  # up to 14 % above 1 thread
        governor.observe(governor.level(), 20, 20 * per_token)
    assert governor.current == 2 and governor.switches == 0


def test_many_cores_step_down_one_level_at_a_time() -> None:
    governor = ThreadGovernor(8)
    speeds = {8: 0.040, 4: 0.012, 2: 0.008, 1: 0.009}  # half the cores are taken
    run(governor, speeds, 40)
    assert governor.current == 2
    assert [level for level in governor.levels if level in governor.recent] == [8, 4, 2, 1]


def test_short_generations_and_unknown_levels_are_not_observations() -> None:
    governor = ThreadGovernor(2)
    governor.observe(2, MIN_TOKENS - 1, 1.0)
    governor.observe(3, 20, 1.0)
    governor.observe(2, 20, 0.0)
    assert governor.observations == 0 and governor.recent == {}


def test_stats_say_what_is_in_use() -> None:
    governor = ThreadGovernor(2)
    run(governor, BUSY, 6)
    stats = governor.stats()
    assert stats["configured"] == 2 and stats["inUse"] == 1 and stats["switches"] == 1
    assert stats["msPerToken"] == {"1": 7.0, "2": 30.0}
