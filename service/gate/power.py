"""Power analysis for the paired tests: what an inconclusive verdict would have needed.

Only an *inconclusive* verdict reports these figures (see :mod:`service.gate.stats`): once
the interval clears the margin there is nothing left to see, however small n is.

* **Minimum detectable effect** at 80 % power (:data:`POWER`),
  ``mde = (t_{1-alpha} + t_{0.8}) * sd(d) / sqrt(n)`` (Student quantiles, n - 1 degrees of
  freedom), for the sample standard deviation ``sd(d)`` of the paired differences.
* **Examples needed** to resolve a margin ``t``: the ``n`` solving
  ``n = ((t_{1-alpha} + t_{0.8}) * sd(d) / t) ** 2``; the quantiles depend on ``n``, so it is
  found by fixed-point iteration from the normal approximation.
"""

from __future__ import annotations

import functools
import math

from scipy import special

POWER = 0.8
"""The power at which the minimum detectable effect is computed."""


@functools.lru_cache(maxsize=4096)
def _q_sum(alpha: float, n: int) -> float:
    """t_{1-alpha} + t_{POWER} with n - 1 degrees of freedom."""
    df = max(n - 1, 1)
    return float(special.stdtrit(df, 1.0 - alpha) + special.stdtrit(df, POWER))


def minimum_detectable_effect(sd: float, n: int, alpha: float) -> float:
    """Smallest shift a one-sided test at ``alpha`` detects with 80 % power."""
    return _q_sum(alpha, n) * sd / math.sqrt(n)


def required_n(sd: float, effect: float, alpha: float) -> int | None:
    """Paired examples needed to detect ``effect`` at ``alpha`` with 80 % power.

    ``None`` when ``effect`` is 0 (no finite sample resolves it); at least 2.
    """
    if effect <= 0:
        return None
    normal = float(special.ndtri(1.0 - alpha) + special.ndtri(POWER))
    n = max(2, math.ceil((normal * sd / effect) ** 2))
    for _ in range(50):  # fixed point of n = ((t_a + t_b)(n) * sd / effect) ** 2
        needed = max(2, math.ceil((_q_sum(alpha, n) * sd / effect) ** 2))
        if needed == n:
            break
        n = needed
    return n
