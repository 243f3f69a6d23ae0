"""Calibration of the gate's verdicts by simulation: how often each verdict comes out when
the true change is known. Used by ``tests/gate/test_calibration.py`` (few draws) and
``benchmarks/gate_calibration.py`` (10,000 draws); every draw runs the real
:func:`~service.gate.stats.paired_comparison`, seeded, so the figures are reproducible.

The scenarios the gate must meet (alpha = 0.05):

* true change exactly at ``-tolerance`` (the boundary of "no regression"): ``fail`` in at
  most alpha of the draws (the false-block rate), up to Monte Carlo error;
* true change 0 with an n whose minimum detectable effect exceeds the tolerance: ``pass``
  whenever the interval clears the tolerance (power does not veto a shown result);
* true change ``-2 x tolerance`` with the n the power formula asks for: ``fail`` in >= 80 %;
* a policy of several rules, each at its boundary, under Holm: any ``fail`` in <= alpha.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from service.gate.multiple_testing import holm
from service.gate.stats import PairedResult, paired_comparison


@dataclass(frozen=True)
class Rates:
    """Shares of draws per verdict."""

    draws: int
    fail: float
    passed: float
    inconclusive: float

    @property
    def mc_error(self) -> float:
        """One Monte Carlo standard error of a rate near alpha = 0.05."""
        return float(np.sqrt(0.05 * 0.95 / self.draws))


def _rates(verdicts: list[str]) -> Rates:
    counts = Counter(verdicts)
    n = len(verdicts)
    return Rates(n, counts["fail"] / n, counts["pass"] / n, counts["inconclusive"] / n)


def continuous_draw(
    rng: np.random.Generator, mean: float, sd: float, n: int, tolerance: float
) -> PairedResult:
    """One paired sample of bounded scores whose differences have this mean and sd."""
    baseline = rng.uniform(0.2, 0.8, size=n)
    return paired_comparison(baseline + rng.normal(mean, sd, size=n), baseline, tolerance=tolerance)


def binary_draw(
    rng: np.random.Generator, p_loss: float, p_gain: float, n: int, tolerance: float
) -> PairedResult:
    """One paired sample of 0/1 scores: each example lost with ``p_loss``, gained with
    ``p_gain`` (true mean change ``p_gain - p_loss``)."""
    kind = rng.choice(3, size=n, p=[p_loss, p_gain, 1.0 - p_loss - p_gain])
    baseline = np.where(kind == 1, 0.0, 1.0)
    candidate = np.where(kind == 0, 0.0, 1.0)
    return paired_comparison(candidate, baseline, tolerance=tolerance, binary=True)


def continuous_rates(
    mean: float, sd: float, n: int, tolerance: float, draws: int, seed: int = 0
) -> Rates:
    rng = np.random.default_rng(seed)
    return _rates([continuous_draw(rng, mean, sd, n, tolerance).verdict for _ in range(draws)])


def binary_rates(
    p_loss: float, p_gain: float, n: int, tolerance: float, draws: int, seed: int = 0
) -> Rates:
    rng = np.random.default_rng(seed)
    return _rates([binary_draw(rng, p_loss, p_gain, n, tolerance).verdict for _ in range(draws)])


def family_false_block(
    rules: int, sd: float, n: int, tolerance: float, draws: int, seed: int = 0
) -> tuple[float, float]:
    """Share of draws in which any of ``rules`` independent rules, each with its true change
    at ``-tolerance``, fails: (without correction, with Holm)."""
    rng = np.random.default_rng(seed)
    raw = holm_any = 0
    for _ in range(draws):
        results = [continuous_draw(rng, -tolerance, sd, n, tolerance) for _ in range(rules)]
        p = [r.p_value if r.p_value is not None else 1.0 for r in results]
        raw += any(r.verdict == "fail" for r in results)
        holm_any += any(q < results[0].alpha for q in holm(p))
    return raw / draws, holm_any / draws
