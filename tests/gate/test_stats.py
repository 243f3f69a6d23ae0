"""The non-inferiority rule: every verdict at every position of the interval, both tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from service.gate.stats import PairedResult, improvement_comparison, mean_ci, paired_comparison

TOL = 0.03
T95 = {50: stats.t.ppf(0.95, 49)}


def _diffs(mean: float, sd: float, n: int = 50, seed: int = 0) -> np.ndarray:
    """Differences with exactly this sample mean and sd (a standardised normal draw)."""
    z = np.random.default_rng(seed).normal(size=n)
    return mean + sd * (z - z.mean()) / z.std(ddof=1)


def _compare(mean: float, sd: float, n: int = 50) -> PairedResult:
    baseline = np.full(n, 0.5)
    return paired_comparison(baseline + _diffs(mean, sd, n), baseline, tolerance=TOL)


def _half_width(sd: float, n: int = 50) -> float:
    return float(stats.t.ppf(0.95, n - 1) * sd / math.sqrt(n))


# sd 0.1, n 50: half width 0.0237, mde 0.035 > tolerance 0.03 (the issue's case)
@pytest.mark.parametrize(
    ("mean", "verdict", "position"),
    [
        (+0.039, "pass", "whole interval above 0 (an improvement)"),
        (0.0, "pass", "interval around 0, lower bound above -t"),
        (-0.005, "pass", "lower bound just above -t"),
        (-0.02, "inconclusive", "straddles -t, mostly above"),
        (-0.03, "inconclusive", "centred on -t"),
        (-0.045, "inconclusive", "straddles -t, mostly below"),
        (-0.06, "fail", "whole interval below -t"),
    ],
)
def test_regression_verdict_at_every_interval_position(
    mean: float, verdict: str, position: str
) -> None:
    result = _compare(mean, 0.1)
    assert result.test == "paired t"
    assert result.verdict == verdict, position
    assert result.ci_low == pytest.approx(mean - _half_width(0.1))
    assert result.ci_high == pytest.approx(mean + _half_width(0.1))
    assert result.mde is not None
    assert result.mde > TOL  # power alone would have called every one of these inconclusive
    if verdict == "pass":
        assert result.ci_low >= -TOL
        assert "no regression beyond the tolerance -0.03" in result.message
    elif verdict == "fail":
        assert result.ci_high < -TOL
        assert result.p_value is not None
        assert result.p_value < 0.05
        assert "regression beyond the tolerance -0.03: upper bound" in result.message
    else:
        assert result.ci_low < -TOL <= result.ci_high
        assert f"need ≈ {result.needed_n} examples" in result.message
        assert "smallest detectable effect 0.035" in result.message.replace("is ", "")


def test_the_issue_case_a_proven_non_regression_with_a_large_mde_passes() -> None:
    """+0.039 with bounds about [+0.015, +0.061], tolerance 0.03, mde 0.035: pass."""
    result = _compare(0.039, 0.1)
    assert result.ci_low is not None
    assert 0.01 < result.ci_low < 0.02
    assert result.verdict == "pass"
    assert not result.inconclusive


@pytest.mark.parametrize(
    ("mean", "verdict"),
    [(0.12, "pass"), (0.07, "inconclusive"), (0.05, "inconclusive"), (0.02, "fail")],
)
def test_min_improvement_mirror_at_every_interval_position(mean: float, verdict: str) -> None:
    baseline = np.full(50, 0.3)
    result = improvement_comparison(baseline + _diffs(mean, 0.1), baseline, delta=0.05)
    assert result.margin == 0.05
    assert result.verdict == verdict
    assert result.ci_low is not None
    assert result.ci_high is not None
    if verdict == "pass":
        assert result.ci_low >= 0.05
        assert result.message.startswith("improved by +0.12")
    elif verdict == "fail":
        assert result.ci_high < 0.05
        assert result.message.startswith("no lift of +0.05")
    else:
        assert result.ci_low < 0.05 <= result.ci_high


def _binary(losses: int, gains: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Baseline right on every example but the ``gains`` ones; the candidate loses
    ``losses`` of the right ones and gains the others."""
    baseline = np.ones(n)
    baseline[:gains] = 0
    candidate = baseline.copy()
    candidate[:gains] = 1
    candidate[gains : gains + losses] = 0
    return candidate, baseline


@pytest.mark.parametrize(
    ("losses", "gains", "n", "verdict", "test"),
    [
        (0, 0, 100, "pass", "Tango score"),  # identical answers on enough examples
        (0, 0, 67, "inconclusive", "exact McNemar"),  # 0 of 67 lost does not prove < 3 %
        (1, 12, 67, "pass", "Tango score"),  # far more gained than lost
        (3, 0, 67, "inconclusive", "exact McNemar"),  # the 5e-5 candidate: 3 of 67 lost
        (7, 0, 67, "fail", "exact McNemar"),  # the 1e-4 candidate: 7 of 67 lost
        (26, 0, 67, "fail", "exact McNemar"),  # the 5e-4 candidate
        (10, 8, 67, "inconclusive", "exact McNemar"),  # change, not forgetting
        (2, 0, 400, "pass", "Tango score"),  # 2 of 400: the interval clears -0.03
    ],
)
def test_binary_scores_are_decided_by_exact_and_score_tests(
    losses: int, gains: int, n: int, verdict: str, test: str
) -> None:
    candidate, baseline = _binary(losses, gains, n)
    result = paired_comparison(candidate, baseline, tolerance=TOL, binary=True)
    assert (result.losses, result.gains) == (losses, gains)
    assert result.effect == pytest.approx((gains - losses) / n)
    assert (result.verdict, result.test) == (verdict, test)
    assert f"{losses} lost / {gains} gained of {n}" in result.message
    assert result.ci_low is not None
    assert result.ci_high is not None
    assert result.ci_low <= result.effect <= result.ci_high
    assert (result.verdict == "fail") == (result.ci_high < -TOL)
    assert (result.verdict == "pass") == (result.ci_low >= -TOL)
    k = losses + gains
    if k:
        # the upper bound: Clopper-Pearson on the discordant pairs, as binomtest gives it
        ci = stats.binomtest(losses, k).proportion_ci(0.9, method="exact")
        assert result.ci_high == pytest.approx(k / n * (1 - 2 * ci.low))
        theta0 = 0.5 + TOL * n / (2 * k)
        if theta0 < 1:
            exact = stats.binomtest(losses, k, theta0, alternative="greater").pvalue
            assert result.p_value == pytest.approx(exact)
        # tolerance 0: exactly the one-sided exact McNemar test
        zero = paired_comparison(candidate, baseline, tolerance=0.0, binary=True)
        mcnemar = stats.binomtest(losses, k, 0.5, alternative="greater").pvalue
        assert zero.p_value == pytest.approx(mcnemar)


@pytest.mark.parametrize("shift", [-0.06, -0.045, -0.035, -0.03, -0.02, 0.0, 0.03])
def test_verdict_and_interval_always_agree(shift: float) -> None:
    rng = np.random.default_rng(5)
    baseline = rng.uniform(0.2, 0.9, size=60)
    result = paired_comparison(
        baseline + shift + rng.normal(0, 0.05, size=60), baseline, tolerance=TOL
    )
    assert result.ci_low is not None
    assert result.ci_high is not None
    assert (result.verdict == "fail") == (result.ci_high < -TOL)
    assert (result.verdict == "pass") == (result.ci_low >= -TOL)
    assert result.p_value is not None
    assert (result.p_value < 0.05) == (result.verdict == "fail")


def test_identical_samples_pass_without_warnings() -> None:
    baseline = np.random.default_rng(0).uniform(0.2, 0.9, size=50)
    for tolerance in (0.0, 0.03):
        result = paired_comparison(baseline.copy(), baseline, tolerance=tolerance)
        assert (result.verdict, result.test, result.effect) == ("pass", "no spread", 0.0)
        assert (result.ci_low, result.ci_high) == (0.0, 0.0)
        json.dumps(result.to_dict(), allow_nan=False)


def test_a_uniform_shift_has_no_spread_and_is_judged_on_its_value() -> None:
    baseline = np.random.default_rng(4).uniform(0.0, 0.3, size=80)
    worse = paired_comparison(baseline + 0.2, baseline, tolerance=0.05, higher_is_better=False)
    assert (worse.effect, worse.verdict, worse.test) == (pytest.approx(-0.2), "fail", "no spread")
    better = paired_comparison(baseline - 0.2, baseline, tolerance=0.05, higher_is_better=False)
    assert better.effect == pytest.approx(0.2)
    assert better.significant_improvement
    assert better.verdict == "pass"


@pytest.mark.parametrize(("n", "phrase"), [(0, "no paired examples"), (1, "only 1 paired")])
def test_zero_and_one_example_are_inconclusive(n: int, phrase: str) -> None:
    result = paired_comparison(np.ones(n), np.zeros(n), tolerance=0.05)
    assert result.verdict == "inconclusive"
    assert (result.n, result.p_value, result.ci_low, result.test) == (n, None, None, "none")
    assert (result.effect is None) == (n == 0)
    assert phrase in result.message


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_comparison([1.0, 2.0], [1.0], tolerance=0.1)
    with pytest.raises(ValueError, match="NaN"):
        paired_comparison([1.0, float("nan")], [1.0, 1.0], tolerance=0.1)
    with pytest.raises(ValueError, match="tolerance"):
        paired_comparison([1.0, 2.0], [1.0, 2.0], tolerance=-0.1)
    with pytest.raises(ValueError, match="delta"):
        improvement_comparison([1.0, 2.0], [1.0, 2.0], delta=0.0)


def test_mean_ci_brackets_the_mean_and_handles_small_samples() -> None:
    values = np.random.default_rng(8).normal(0.5, 0.1, size=200)
    ci = mean_ci(values)
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
