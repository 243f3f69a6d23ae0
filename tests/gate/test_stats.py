from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from service.gate.stats import mean_ci, minimum_detectable_effect, paired_comparison, required_n


def _scores(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.9, size=n)


def test_identical_samples_are_no_regression_without_warnings() -> None:
    baseline = _scores(50)
    result = paired_comparison(baseline.copy(), baseline, tolerance=0.03)
    assert result.effect == 0.0
    assert result.p_value == 1.0
    assert not result.significant_regression
    assert not result.inconclusive  # zero variance: any regression would have been seen
    assert result.mde == 0.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)
    json.dumps(result.to_dict(), allow_nan=False)


def test_shift_beyond_tolerance_with_small_noise_is_a_significant_failure() -> None:
    rng = np.random.default_rng(1)
    baseline = _scores(100)
    candidate = baseline - 0.1 + rng.normal(0, 0.02, size=100)
    result = paired_comparison(candidate, baseline, tolerance=0.03)
    assert result.significant_regression
    assert result.p_value is not None
    assert result.p_value < 0.05
    assert result.ci_high is not None
    assert result.ci_high < -0.03
    assert result.effect == pytest.approx(-0.1, abs=0.01)
    assert "significant regression" in result.message


def test_shift_within_tolerance_passes() -> None:
    rng = np.random.default_rng(2)
    baseline = _scores(200)
    candidate = baseline - 0.01 + rng.normal(0, 0.02, size=200)
    result = paired_comparison(candidate, baseline, tolerance=0.03)
    assert not result.significant_regression
    assert not result.inconclusive
    assert result.p_value is not None
    assert result.p_value > 0.5
    assert result.ci_low is not None
    assert result.ci_high is not None
    assert result.ci_low < -0.01 < result.ci_high


def test_tiny_sample_is_inconclusive_and_says_how_many_examples_are_needed() -> None:
    rng = np.random.default_rng(3)
    baseline = _scores(6)
    candidate = baseline + rng.normal(0, 0.2, size=6)
    result = paired_comparison(candidate, baseline, tolerance=0.03)
    assert result.inconclusive
    assert not result.significant_regression
    assert result.mde is not None
    assert result.mde > 0.03
    assert result.sd is not None
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    assert result.needed_n is not None
    assert result.needed_n == math.ceil((z * result.sd / 0.03) ** 2)
    assert result.needed_n > 6
    assert f"need ≈ {result.needed_n} examples" in result.message


@pytest.mark.parametrize(("n", "phrase"), [(0, "no paired examples"), (1, "only 1 paired")])
def test_zero_and_one_example_are_inconclusive(n: int, phrase: str) -> None:
    result = paired_comparison(np.ones(n), np.zeros(n), tolerance=0.05)
    assert result.inconclusive
    assert not result.significant_regression
    assert result.n == n
    assert result.p_value is None
    assert result.ci_low is None
    assert (result.effect is None) == (n == 0)
    assert phrase in result.message


def test_lower_is_better_metrics_are_oriented_so_negative_is_worse() -> None:
    baseline = np.random.default_rng(4).uniform(0.0, 0.3, size=80)
    candidate = baseline + 0.2  # hallucination went up: worse
    result = paired_comparison(candidate, baseline, tolerance=0.05, higher_is_better=False)
    assert result.effect == pytest.approx(-0.2)
    assert result.significant_regression
    better = paired_comparison(baseline - 0.2, baseline, tolerance=0.05, higher_is_better=False)
    assert better.effect == pytest.approx(0.2)
    assert better.significant_improvement
    assert not better.significant_regression


@pytest.mark.parametrize("shift", [-0.06, -0.045, -0.035, -0.03, -0.02, 0.0])
def test_p_value_agrees_with_the_one_sided_bound(shift: float) -> None:
    rng = np.random.default_rng(5)
    baseline = _scores(60)
    candidate = baseline + shift + rng.normal(0, 0.05, size=60)
    result = paired_comparison(candidate, baseline, tolerance=0.03)
    assert result.p_value is not None
    assert result.ci_high is not None
    assert result.significant_regression == (result.p_value < 0.05)
    assert result.significant_regression == (result.ci_high < -0.03)


def test_bootstrap_interval_matches_the_t_interval_on_normal_data() -> None:
    rng = np.random.default_rng(6)
    baseline = _scores(400)
    candidate = baseline + rng.normal(0.01, 0.1, size=400)
    result = paired_comparison(candidate, baseline, tolerance=0.03, n_resamples=4000)
    diffs = candidate - baseline
    t_low, t_high = stats.t.interval(0.90, len(diffs) - 1, diffs.mean(), stats.sem(diffs))
    assert result.confidence == pytest.approx(0.90)
    assert result.ci_low == pytest.approx(t_low, abs=0.003)
    assert result.ci_high == pytest.approx(t_high, abs=0.003)


def test_fixed_seed_is_reproducible() -> None:
    rng = np.random.default_rng(7)
    baseline = _scores(30)
    candidate = baseline + rng.normal(0, 0.1, size=30)
    first = paired_comparison(candidate, baseline, tolerance=0.03, seed=11)
    again = paired_comparison(candidate, baseline, tolerance=0.03, seed=11)
    other = paired_comparison(candidate, baseline, tolerance=0.03, seed=12)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_minimum_detectable_effect_uses_the_normal_approximation() -> None:
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    assert minimum_detectable_effect(0.2, 100, 0.05) == pytest.approx(z * 0.02)
    assert required_n(0.2, 0.05, 0.05) == math.ceil((z * 0.2 / 0.05) ** 2)
    assert required_n(0.2, 0.0, 0.05) is None


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_comparison([1.0, 2.0], [1.0], tolerance=0.1)
    with pytest.raises(ValueError, match="NaN"):
        paired_comparison([1.0, float("nan")], [1.0, 1.0], tolerance=0.1)
    with pytest.raises(ValueError, match="tolerance"):
        paired_comparison([1.0, 2.0], [1.0, 2.0], tolerance=-0.1)


def test_mean_ci_brackets_the_mean_and_handles_small_samples() -> None:
    values = np.random.default_rng(8).normal(0.5, 0.1, size=200)
    ci = mean_ci(values)
    assert ci.mean == pytest.approx(values.mean())
    assert ci.ci_low is not None
    assert ci.ci_high is not None
    assert ci.mean is not None
    assert ci.ci_low < ci.mean < ci.ci_high
    half_width = stats.norm.ppf(0.975) * values.std(ddof=1) / math.sqrt(200)
    assert ci.ci_high - ci.ci_low == pytest.approx(2 * half_width, rel=0.15)
    assert mean_ci([]).mean is None
    assert mean_ci([0.3]).ci_low is None
    assert mean_ci([0.3, 0.3, 0.3]).ci_high == pytest.approx(0.3)
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([0.1, float("inf")])
