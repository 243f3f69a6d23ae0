"""The three ways the gate tests a paired mean change against a margin (see
:mod:`service.gate.stats` for when each is used and why): an exact conditional test on the
discordant pairs of binary scores (McNemar's), the paired t-test, and a sample with no spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

TestName = Literal["exact McNemar", "Tango score", "paired t", "no spread", "none"]


def is_binary(*arrays: NDArray[np.float64]) -> bool:
    """Every value of every array is 0 or 1."""
    return all(bool(np.all((a == 0.0) | (a == 1.0))) for a in arrays)


@dataclass(frozen=True)
class MarginTest:
    """The outcome of one test of the mean change against a margin."""

    name: TestName
    ci_low: float
    ci_high: float
    """The two-sided (1 - 2 alpha) interval of the mean change."""
    p_below: float
    """p-value of H0: mean >= margin (small: the change lies below the margin)."""
    p_above: float
    """p-value of H0: mean <= margin (small: the change clears the margin)."""
    p_improvement: float
    """p-value of H0: mean <= 0."""


def exact_binary(diffs: NDArray[np.float64], margin: float, alpha: float) -> MarginTest:
    """Binary scores (n >= 1). The fail side - the upper bound
    and its p-value - is the exact test conditional on the discordant pairs (McNemar's);
    the pass side is Tango's score test, which, unlike the conditional test, accounts for
    how few discordant pairs a sample may have by chance (conditioning on them calls 1 loss
    in 67 a proof of non-inferiority at tolerance 0.03, wrongly, most of the time)."""
    n = diffs.size
    losses = int(np.count_nonzero(diffs < 0))
    k = losses + int(np.count_nonzero(diffs > 0))
    if k == 0:  # no discordant pair: the conditional change is exactly 0
        return MarginTest(
            name="exact McNemar",
            ci_low=_tango_lower(0, 0, n, alpha),
            ci_high=0.0,
            p_below=1.0 if margin <= 0 else 0.0,
            p_above=_tango_p_above(0, 0, n, margin),
            p_improvement=1.0,
        )
    theta0 = 0.5 - margin * n / (2 * k)
    if theta0 >= 1.0:  # the mean change cannot fall below the margin given k
        p_below = 1.0
    elif theta0 <= 0.0:  # the mean change cannot reach the margin given k
        p_below = 0.0 if theta0 < 0.0 or losses > 0 else 1.0
    else:  # P(X >= losses) for X ~ Binomial(k, theta0): binomtest's upper tail
        p_below = float(special.bdtrc(losses - 1, k, theta0)) if losses else 1.0
    # Clopper-Pearson lower bound of theta at 1 - alpha (binomtest's "exact" interval)
    theta_low = 0.0 if losses == 0 else float(special.betaincinv(losses, k - losses + 1, alpha))
    gains = k - losses
    return MarginTest(
        name="exact McNemar",
        ci_low=_tango_lower(gains, losses, n, alpha),
        ci_high=k / n * (1.0 - 2.0 * theta_low),
        p_below=p_below,
        p_above=_tango_p_above(gains, losses, n, margin),
        p_improvement=float(special.bdtr(losses, k, 0.5)),
    )


def _tango_z(gains: int, losses: int, n: int, delta: float) -> float:
    """Tango's score statistic of H0: p_gain - p_loss = delta (delta in (-1, 1)), with the
    loss rate's maximum-likelihood estimate restricted to H0 (a root of a quadratic)."""
    b = gains * (1 - delta) + losses * (1 - 3 * delta) - 2 * (n - gains - losses) * delta
    loss = (b + math.sqrt(max(0.0, b * b + 8 * n * losses * delta * (1 - delta)))) / (4 * n)
    variance = max(2 * loss + delta - delta * delta, 1e-300) / n
    return ((gains - losses) / n - delta) / math.sqrt(variance)


def _tango_p_above(gains: int, losses: int, n: int, margin: float) -> float:
    """One-sided score p-value of H0: mean change <= margin."""
    if margin <= -1.0:
        return 0.0
    if margin >= 1.0:
        return 1.0
    return float(special.ndtr(-_tango_z(gains, losses, n, margin)))


def _tango_lower(gains: int, losses: int, n: int, alpha: float) -> float:
    """Tango's one-sided (1 - alpha) lower score bound of the mean change."""
    z = float(special.ndtri(1.0 - alpha))
    estimate = (gains - losses) / n
    low = -1.0 + 1e-12
    if estimate <= low or _tango_z(gains, losses, n, low) <= z:
        return -1.0
    return float(
        optimize.brentq(lambda d: _tango_z(gains, losses, n, d) - z, low, estimate, xtol=1e-10)
    )


def paired_t(diffs: NDArray[np.float64], margin: float, alpha: float) -> MarginTest:
    """Paired t-test and t-interval (needs n >= 2 and a positive spread); the same numbers
    as ``scipy.stats.ttest_1samp``, computed with ``scipy.special``'s t distribution directly
    (fast enough to simulate 10,000 times)."""
    n = diffs.size
    mean = float(np.mean(diffs))
    se = float(np.std(diffs, ddof=1)) / math.sqrt(n)
    df = n - 1
    half = float(special.stdtrit(df, 1.0 - alpha)) * se
    t_margin = (mean - margin) / se
    return MarginTest(
        name="paired t",
        ci_low=mean - half,
        ci_high=mean + half,
        p_below=float(special.stdtr(df, t_margin)),
        p_above=float(special.stdtr(df, -t_margin)),
        p_improvement=float(special.stdtr(df, -mean / se)),
    )


def no_spread(effect: float, margin: float) -> MarginTest:
    """Every example moved by the same amount: no sampling uncertainty."""
    clears = effect >= margin
    return MarginTest(
        name="no spread",
        ci_low=effect,
        ci_high=effect,
        p_below=1.0 if clears else 0.0,
        p_above=0.0 if clears else 1.0,
        p_improvement=0.0 if effect > 0 else 1.0,
    )
