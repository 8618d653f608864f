"""Token sampling (pure numpy, no model): greedy, log-probabilities, and top-p nucleus
sampling, including a nucleus wider than the partial sort's candidates."""

from __future__ import annotations

import numpy as np
import pytest

from lsp_server.backends.sampler import NUCLEUS_CANDIDATES, Sampler


def reference_logprobs(logits: np.ndarray) -> np.ndarray:
    wide = logits.astype(np.float64)
    return wide - (wide.max() + np.log(np.exp(wide - wide.max()).sum()))


def test_greedy_without_logprob_is_the_argmax() -> None:
    logits = np.array([0.1, 3.0, -2.0, 2.9], dtype=np.float32)
    assert Sampler(0.0, 0.95, np.random.default_rng(0)).choose(logits, logprob=False) == (1, 0.0)


def test_log_probability_matches_a_float64_softmax() -> None:
    logits = (np.random.default_rng(1).standard_normal(262_144) * 4).astype(np.float32)
    token, logprob = Sampler(0.0, 0.95, np.random.default_rng(0)).choose(logits)
    assert token == int(np.argmax(logits))
    assert logprob == pytest.approx(reference_logprobs(logits)[token], abs=1e-4)
    sampled, sampled_logprob = Sampler(0.8, 0.95, np.random.default_rng(0)).choose(logits)
    assert sampled_logprob == pytest.approx(reference_logprobs(logits)[sampled], abs=1e-4)


def test_nucleus_draws_only_its_tokens_in_proportion() -> None:
    # Five likely tokens (mass ~0.97 at T=1) in a 100k vocabulary of unlikely ones.
    logits = np.full(100_000, -30.0, dtype=np.float32)
    likely = {7: 4.0, 70: 3.0, 700: 2.0, 7_000: 1.0, 70_000: 0.0}
    for index, value in likely.items():
        logits[index] = value
    sampler = Sampler(1.0, 0.9, np.random.default_rng(3))
    draws = [sampler.choose(logits, logprob=False)[0] for _ in range(3000)]
    # Mass 0.644, 0.237, 0.087, 0.032: the first three reach 0.9 (0.968 > 0.9).
    assert set(draws) == {7, 70, 700}
    weights = np.exp(np.array([4.0, 3.0, 2.0]))
    expected = weights / weights.sum()
    observed = np.array([draws.count(t) for t in (7, 70, 700)]) / len(draws)
    assert np.allclose(observed, expected, atol=0.03)


def test_a_nucleus_wider_than_the_candidates_is_sampled_whole() -> None:
    size = NUCLEUS_CANDIDATES * 3
    logits = np.zeros(size, dtype=np.float32)  # uniform: the nucleus is 90 % of the vocabulary
    sampler = Sampler(1.0, 0.9, np.random.default_rng(5))
    draws = {sampler.choose(logits, logprob=False)[0] for _ in range(4000)}
    assert len(draws) > NUCLEUS_CANDIDATES
    assert all(0 <= token < size for token in draws)


def test_seeded_draws_repeat() -> None:
    logits = (np.random.default_rng(2).standard_normal(50_000) * 3).astype(np.float32)
    first = [Sampler(0.6, 0.95, np.random.default_rng(9)).choose(logits)[0] for _ in range(3)]
    again = [Sampler(0.6, 0.95, np.random.default_rng(9)).choose(logits)[0] for _ in range(3)]
    assert first == again


def test_the_threshold_shortcut_draws_as_the_partial_sort_does() -> None:
    """Peaked logits (as a model's usually are) take the one-pass threshold path; flat
    ones fall back to the partial sort. Both sample the same nucleus: the draws of a
    seeded sampler equal those of a sampler forced onto the partial sort."""
    from lsp_server.backends import sampler as module

    rng = np.random.default_rng(4)
    peaked = (rng.standard_normal(262_144) * 2).astype(np.float32)
    peaked[rng.integers(262_144, size=30)] += 16
    flat = (rng.standard_normal(262_144) * 0.5).astype(np.float32)
    for logits in (peaked, flat):
        fast = Sampler(0.8, 0.95, np.random.default_rng(11))
        draws = [fast.choose(logits)[0] for _ in range(200)]
        share = module.CANDIDATE_SHARE
        try:
            module.CANDIDATE_SHARE = np.float32(np.inf)  # no token passes: the partial sort
            slow = Sampler(0.8, 0.95, np.random.default_rng(11))
            assert [slow.choose(logits)[0] for _ in range(200)] == draws
        finally:
            module.CANDIDATE_SHARE = share


def test_logit_views_are_made_once_per_row_and_see_the_buffer_live() -> None:
    """One view per address, reading llama.cpp's buffer in place (no copy); a null
    pointer is an error, not a view of address 0."""
    import ctypes

    from lsp_server.backends.sampler import LogitViews

    rows = (ctypes.c_float * 8)(*range(8)), (ctypes.c_float * 8)(*range(8, 16))
    pointers = [ctypes.cast(row, ctypes.POINTER(ctypes.c_float)) for row in rows]
    views = LogitViews(8, bound=2)
    first = views.of(pointers[0])
    assert views.of(pointers[0]) is first and list(first) == list(range(8))
    rows[0][3] = 99.0
    assert first[3] == 99.0  # the buffer itself
    second = views.of(pointers[1])
    assert second is not first and second[0] == 8
    assert views.of(ctypes.cast(rows[1], ctypes.POINTER(ctypes.c_float))) is second
    views.of(ctypes.cast(ctypes.byref(rows[1], 4), ctypes.POINTER(ctypes.c_float)))  # a third: over the bound
    assert views.of(pointers[0]) is not first  # made again after the clear
    with pytest.raises(RuntimeError, match="no logits"):
        views.of(ctypes.POINTER(ctypes.c_float)())
