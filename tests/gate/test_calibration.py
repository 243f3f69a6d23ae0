"""Calibration by simulation (fixed seeds, 2,000 draws; the benchmark runs 10,000):
each verdict's error rate where the true change is known. Monte Carlo error at 2,000
draws is 0.49 % around alpha = 5 %; bounds below allow three of them."""

from __future__ import annotations

import math

import pytest

from service.gate.calibration import (
    binary_rates,
    continuous_rates,
    family_false_block,
)
from service.gate.power import required_n

ALPHA = 0.05
DRAWS = 2000
SLACK = 3 * math.sqrt(ALPHA * (1 - ALPHA) / DRAWS)
TOL = 0.03


@pytest.mark.parametrize("n", [16, 50, 200])
def test_true_change_at_the_tolerance_fails_at_most_alpha(n: int) -> None:
    rates = continuous_rates(-TOL, 0.1, n, TOL, DRAWS, seed=n)
    assert rates.fail <= ALPHA + SLACK
    assert rates.fail >= ALPHA - SLACK  # and is not needlessly conservative


def test_no_change_passes_whenever_the_interval_clears_despite_a_large_mde() -> None:
    # n = 50, sd 0.1: mde 0.036 > tolerance 0.03, P(lower bound >= -0.03) = 0.68
    rates = continuous_rates(0.0, 0.1, 50, TOL, DRAWS, seed=1)
    assert rates.fail == 0.0
    assert 0.68 - 0.04 <= rates.passed <= 0.68 + 0.04


def test_twice_the_tolerance_fails_with_80_percent_power_at_the_needed_n() -> None:
    n = required_n(0.1, TOL, ALPHA)
    assert n is not None
    rates = continuous_rates(-2 * TOL, 0.1, n, TOL, DRAWS, seed=2)
    assert rates.fail >= 0.80 - 3 * math.sqrt(0.8 * 0.2 / DRAWS)


@pytest.mark.parametrize(
    ("p_loss", "p_gain", "n"), [(0.08, 0.05, 67), (0.03, 0.0, 67), (0.05, 0.02, 200)]
)
def test_binary_true_change_at_the_tolerance_fails_and_passes_at_most_alpha(
    p_loss: float, p_gain: float, n: int
) -> None:
    rates = binary_rates(p_loss, p_gain, n, TOL, DRAWS, seed=3)
    assert rates.fail <= ALPHA + SLACK  # false block
    assert rates.passed <= ALPHA + SLACK  # false pass


def test_binary_twice_the_tolerance_fails_with_80_percent_power() -> None:
    p_loss, p_gain = 0.08, 0.02
    n = required_n(math.sqrt(p_loss + p_gain - (p_loss - p_gain) ** 2), TOL, ALPHA)
    assert n is not None
    rates = binary_rates(p_loss, p_gain, n, TOL, DRAWS, seed=4)
    assert rates.fail >= 0.80 - 3 * math.sqrt(0.8 * 0.2 / DRAWS)


def test_nine_rules_at_their_boundary_block_at_most_alpha_under_holm() -> None:
    uncorrected, corrected = family_false_block(9, 0.1, 50, TOL, 600, seed=5)
    assert uncorrected > 0.25  # 1 - 0.95 ** 9 = 0.37 without a correction
    assert corrected <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / 600)
