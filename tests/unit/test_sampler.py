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
