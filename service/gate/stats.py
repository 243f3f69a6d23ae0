"""Paired statistics for the gate: bootstrap confidence intervals, one-sided tests, power.

Every comparison is *paired*: the candidate and the baseline answered the same examples, so
the unit of analysis is the per-example difference ``d_i = candidate_i - baseline_i``,
multiplied by -1 for lower-is-better metrics so that a negative ``d`` always means "worse".

Choices, and why:

* **Percentile bootstrap** of the mean difference (``scipy.stats.bootstrap``, fixed seed).
  BCa corrects for skew but degenerates on tiny or constant samples and its correction is
  small for a mean; the percentile method also lets the p-value be read off the same
  bootstrap distribution, so the reported interval and the verdict can never disagree.
* The reported paired interval is the **two-sided (1 - 2·alpha)** interval (90 % for
  alpha = 0.05): each of its bounds is the one-sided (1 - alpha) bound, which is exactly what
  the one-sided regression / improvement tests use (as in non-inferiority testing).
* **Regression test** (tolerance ``t``): H0: mean d >= -t against H1: mean d < -t. The
  bootstrap p-value is the share of resampled means that are >= -t, so
  ``p < alpha  <=>  ci_high < -t`` (up to one resample at the boundary).
* **Power**: minimum detectable effect at 80 % power with the normal approximation,
  ``mde = (z_{1-alpha} + z_{0.8}) * sd(d) / sqrt(n)``; the examples needed to detect the
  tolerance are ``ceil(((z_{1-alpha} + z_{0.8}) * sd(d) / t) ** 2)``.

Zero variance, n = 0 and n = 1 are handled explicitly: no numpy or scipy warning is ever
raised (the test suite turns warnings into errors).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

POWER = 0.8
"""The power at which the minimum detectable effect is computed."""


@dataclass(frozen=True)
class PairedResult:
    """A paired candidate-vs-baseline comparison on one metric.

    ``effect`` and the interval are in oriented units: candidate minus baseline, multiplied
    by -1 for lower-is-better metrics, so negative always means the candidate is worse.
    Fields are ``None`` where n is too small to compute them (n = 0: everything; n = 1: the
    interval, p-values and power).
    """

    effect: float | None
    """Mean oriented paired difference."""
    ci_low: float | None
    """Lower bound of the two-sided ``confidence`` interval = one-sided (1 - alpha) bound."""
    ci_high: float | None
    """Upper bound of the two-sided ``confidence`` interval = one-sided (1 - alpha) bound."""
    p_value: float | None
    """One-sided p-value of H0: mean >= -tolerance (small = significant regression)."""
    n: int
    mde: float | None
    """Minimum detectable effect at alpha with 80 % power (normal approximation)."""
    significant_regression: bool
    """The regression exceeds the tolerance and is significant at alpha."""
    inconclusive: bool
    """Not a significant regression, and n is too small to detect the tolerance."""
    tolerance: float
    alpha: float
    confidence: float
    """Coverage of ``[ci_low, ci_high]``: 1 - 2·alpha."""
    sd: float | None
    """Sample standard deviation of the differences (ddof = 1)."""
    needed_n: int | None
    """Examples needed to detect a regression of ``tolerance`` at 80 % power."""
    p_improvement: float | None
    """One-sided p-value of H0: mean <= 0 (small = significant improvement)."""
    significant_improvement: bool
    """The lower one-sided (1 - alpha) bound is above zero."""
    higher_is_better: bool
    """Direction of the metric: the raw change is ``effect`` if True, else ``-effect``."""
    message: str
    """One human sentence: what was found, or why nothing could be concluded."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (all values are finite floats, ints, bools or None)."""
        return asdict(self)


@dataclass(frozen=True)
class MeanCI:
    """A sample mean with its two-sided (1 - alpha) percentile-bootstrap interval."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def _finite_array(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _bootstrap_means(
    values: NDArray[np.float64], *, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float, NDArray[np.float64]]:
    """Percentile-bootstrap interval of the mean and the resampled means (needs n >= 2)."""
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        method="percentile",
        confidence_level=confidence,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high), result.bootstrap_distribution


def _z_sum(alpha: float) -> float:
    return float(stats.norm.ppf(1.0 - alpha) + stats.norm.ppf(POWER))


def minimum_detectable_effect(sd: float, n: int, alpha: float) -> float:
    """Smallest shift a one-sided test at ``alpha`` detects with 80 % power (normal approx.)."""
    return _z_sum(alpha) * sd / math.sqrt(n)


def required_n(sd: float, effect: float, alpha: float) -> int | None:
    """Paired examples needed to detect ``effect`` at ``alpha`` with 80 % power.

    ``None`` when ``effect`` is 0 (no finite sample resolves it); at least 2.
    """
    if effect <= 0:
        return None
    return max(2, math.ceil((_z_sum(alpha) * sd / effect) ** 2))


def mean_ci(
    values: ArrayLike, alpha: float = 0.05, n_resamples: int = 2000, seed: int = 0
) -> MeanCI:
    """Mean of ``values`` with a two-sided (1 - alpha) percentile-bootstrap interval.

    n = 0 gives ``mean=None``; n = 1 gives the value without an interval; a constant sample
    gives a zero-width interval. Raises ``ValueError`` on NaN or infinite values.
    """
    array = _finite_array(values, "values")
    confidence = 1.0 - alpha
    if array.size == 0:
        return MeanCI(None, None, None, 0, confidence)
    mean = float(np.mean(array))
    if array.size == 1:
        return MeanCI(mean, None, None, 1, confidence)
    if np.ptp(array) == 0.0:
        return MeanCI(mean, mean, mean, int(array.size), confidence)
    low, high, _ = _bootstrap_means(
        array, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    return MeanCI(mean, low, high, int(array.size), confidence)


def oriented_differences(
    candidate: ArrayLike, baseline: ArrayLike, *, higher_is_better: bool = True
) -> NDArray[np.float64]:
    """Per-example ``candidate - baseline``, negated for lower-is-better metrics.

    Raises ``ValueError`` when the arrays differ in length or hold non-finite values.
    """
    cand = _finite_array(candidate, "candidate")
    base = _finite_array(baseline, "baseline")
    if cand.shape != base.shape:
        raise ValueError(f"paired samples differ in length: {cand.size} vs {base.size}")
    diffs = cand - base
    return diffs if higher_is_better else -diffs


def paired_comparison(
    candidate: ArrayLike,
    baseline: ArrayLike,
    *,
    tolerance: float,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
    higher_is_better: bool = True,
) -> PairedResult:
    """Compare paired candidate and baseline scores against a regression tolerance.

    ``candidate[i]`` and ``baseline[i]`` must be the same example's scores. Fails
    (``significant_regression``) only when the one-sided test H0: mean d >= -tolerance is
    rejected at ``alpha``; reports ``inconclusive`` when it is not rejected and the sample
    is too small to detect a regression of ``tolerance`` (mde > tolerance, or n < 2).
    Raises ``ValueError`` on mismatched lengths, non-finite scores or a negative tolerance.
    """
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    diffs = oriented_differences(candidate, baseline, higher_is_better=higher_is_better)
    n = int(diffs.size)
    if n < 2:
        if n == 0:
            why = "no paired examples: nothing to compare"
            return _too_few(0, None, tolerance, alpha, higher_is_better, why)
        why = "only 1 paired example: need at least 2 to estimate the variability"
        return _too_few(1, float(diffs[0]), tolerance, alpha, higher_is_better, why)

    effect = float(np.mean(diffs))
    sd = float(np.std(diffs, ddof=1))
    if sd == 0.0:
        # Every example moved by exactly the same amount: no sampling uncertainty.
        ci_low = ci_high = effect
        p_value = 0.0 if effect < -tolerance else 1.0
        p_improvement = 0.0 if effect > 0 else 1.0
    else:
        ci_low, ci_high, means = _bootstrap_means(
            diffs, confidence=1.0 - 2.0 * alpha, n_resamples=n_resamples, seed=seed
        )
        # +1 in numerator and denominator: a bootstrap p-value is never exactly 0.
        p_value = float((np.count_nonzero(means >= -tolerance) + 1) / (means.size + 1))
        p_improvement = float((np.count_nonzero(means <= 0.0) + 1) / (means.size + 1))

    mde = minimum_detectable_effect(sd, n, alpha)
    needed_n = required_n(sd, tolerance, alpha)
    regression = p_value < alpha
    inconclusive = not regression and mde > tolerance
    return PairedResult(
        effect=effect,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        mde=mde,
        significant_regression=regression,
        inconclusive=inconclusive,
        sd=sd,
        needed_n=needed_n,
        p_improvement=p_improvement,
        significant_improvement=p_improvement < alpha,
        higher_is_better=higher_is_better,
        message=_message(effect, tolerance, n, mde, needed_n, regression, inconclusive),
        n=n,
        tolerance=tolerance,
        alpha=alpha,
        confidence=1.0 - 2.0 * alpha,
    )


def _too_few(
    n: int, effect: float | None, tolerance: float, alpha: float, higher_is_better: bool, why: str
) -> PairedResult:
    """The result for n < 2: inconclusive, nothing but the point estimate."""
    return PairedResult(
        effect=effect,
        ci_low=None,
        ci_high=None,
        p_value=None,
        n=n,
        mde=None,
        significant_regression=False,
        inconclusive=True,
        tolerance=tolerance,
        alpha=alpha,
        confidence=1.0 - 2.0 * alpha,
        sd=None,
        needed_n=None,
        p_improvement=None,
        significant_improvement=False,
        higher_is_better=higher_is_better,
        message=why,
    )


def _message(
    effect: float,
    tolerance: float,
    n: int,
    mde: float,
    needed_n: int | None,
    regression: bool,
    inconclusive: bool,
) -> str:
    if regression:
        return f"significant regression of {effect:+.4g} beyond the tolerance {tolerance:.4g}"
    if inconclusive:
        need = (
            f"need ≈ {needed_n} examples to detect it"
            if needed_n is not None
            else "a zero tolerance cannot be resolved under noise"
        )
        return (
            f"inconclusive: with n={n} the smallest detectable effect is {mde:.4g} > "
            f"tolerance {tolerance:.4g} ({need})"
        )
    return f"no significant regression beyond {tolerance:.4g} (effect {effect:+.4g}, n={n})"
