"""Invariants of the paired statistics, property-based (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.gate.stats import paired_comparison

RANK = {"fail": 0, "inconclusive": 1, "pass": 2}
scores = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=60)
bits = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=2, max_size=80)
tolerances = st.sampled_from([0.0, 0.01, 0.03, 0.1])


@settings(max_examples=150, deadline=None)
@given(base=scores, noise=st.integers(0, 2**31), tolerance=tolerances)
def test_interval_contains_the_mean(base: list[float], noise: int, tolerance: float) -> None:
    baseline = np.array(base)
    candidate = np.clip(baseline + np.random.default_rng(noise).normal(0, 0.2, baseline.size), 0, 1)
    result = paired_comparison(candidate, baseline, tolerance=tolerance)
    assert result.ci_low is not None
    assert result.ci_high is not None
    assert result.effect is not None
    assert result.ci_low - 1e-12 <= result.effect <= result.ci_high + 1e-12


@settings(max_examples=150, deadline=None)
@given(
    base=scores,
    noise=st.integers(0, 2**31),
    shift=st.floats(0.0, 0.5),
    tolerance=tolerances,
)
def test_verdict_is_monotone_in_the_shift(
    base: list[float], noise: int, shift: float, tolerance: float
) -> None:
    baseline = np.array(base)
    candidate = baseline + np.random.default_rng(noise).normal(-0.05, 0.1, baseline.size)
    before = paired_comparison(candidate, baseline, tolerance=tolerance)
    after = paired_comparison(candidate + shift, baseline, tolerance=tolerance)
    assert RANK[after.verdict] >= RANK[before.verdict]


@settings(max_examples=150, deadline=None)
@given(pairs=bits, tolerance=tolerances)
def test_binary_verdict_is_monotone_when_a_loss_becomes_a_gain(
    pairs: list[tuple[int, int]], tolerance: float
) -> None:
    candidate = np.array([c for c, _ in pairs], dtype=float)
    baseline = np.array([b for _, b in pairs], dtype=float)
    lost = np.flatnonzero((baseline == 1) & (candidate == 0))
    before = paired_comparison(candidate, baseline, tolerance=tolerance, binary=True)
    if lost.size:
        better = candidate.copy()
        better[lost[0]] = 1.0  # the loss becomes a tie
        after = paired_comparison(better, baseline, tolerance=tolerance, binary=True)
        assert RANK[after.verdict] >= RANK[before.verdict]


@settings(max_examples=150, deadline=None)
@given(base=scores, bits_=bits, tolerance=tolerances)
def test_identical_samples_never_fail(
    base: list[float], bits_: list[tuple[int, int]], tolerance: float
) -> None:
    baseline = np.array(base)
    result = paired_comparison(baseline.copy(), baseline, tolerance=tolerance)
    assert result.verdict == "pass"
    assert result.effect == 0.0
    right = np.array([float(b) for _, b in bits_])
    result = paired_comparison(right.copy(), right, tolerance=tolerance, binary=True)
    assert result.verdict != "fail"
    assert result.effect == 0.0
