"""pass@k: the unbiased estimator against exact binomials, and its edge cases."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsp_server.evaluation.passk import mean_pass_at_k, pass_at_k, pass_at_ks


def exact(n: int, c: int, k: int) -> float:
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        pytest.param(1, 1, 1, 1.0, id="single-pass"),
        pytest.param(1, 0, 1, 0.0, id="single-fail"),
        pytest.param(10, 3, 1, 0.3, id="pass1-is-fraction"),
        pytest.param(10, 0, 10, 0.0, id="none-correct"),
        pytest.param(10, 1, 10, 1.0, id="k-equals-n-one-correct"),
        pytest.param(5, 2, 2, 0.7, id="small-exact"),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        pytest.param(200, 1, 100, 0.5, id="half"),
    ],
)
def test_known_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@given(st.integers(1, 300).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_matches_exact_binomials(case: tuple[int, int, int]) -> None:
    n, c, k = case
    assert pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), abs=1e-9)


def test_stable_where_binomials_overflow_floats() -> None:
    # C(2000, 1000) is far beyond float range; the product form is still exact enough.
    assert math.comb(2000, 1000) > 1e308
    assert pass_at_k(2000, 3, 1000) == pytest.approx(exact(2000, 3, 1000), rel=1e-9)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [
        pytest.param(0, 0, 1, id="no-samples"),
        pytest.param(5, 6, 1, id="more-correct-than-samples"),
        pytest.param(5, 1, 0, id="k-zero"),
        pytest.param(5, 1, 6, id="k-above-n"),
        pytest.param(5, -1, 1, id="negative-c"),
    ],
)
def test_invalid_input_raises(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_and_table() -> None:
    counts = {"a": (10, 10), "b": (10, 0), "c": (2, 1)}
    assert mean_pass_at_k(counts.values(), 1) == pytest.approx((1 + 0 + 0.5) / 3)
    # k=10 is dropped: task "c" has only 2 samples.
    assert pass_at_ks(counts, [1, 2, 10]) == pytest.approx({1: 0.5, 2: (1 + 0 + 1) / 3})
    with pytest.raises(ValueError):
        mean_pass_at_k([], 1)
