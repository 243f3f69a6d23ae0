"""Paired statistics for the gate: non-inferiority and improvement tests, intervals, power.

Every comparison is *paired*: the candidate and the baseline answered the same examples, so
the unit of analysis is the per-example difference ``d_i = candidate_i - baseline_i``,
multiplied by -1 for lower-is-better metrics so that a negative ``d`` always means "worse".

**The verdict is read off the interval against a margin** ``m`` (the non-inferiority rule).
With ``[lo, hi]`` the two-sided ``1 - 2·alpha`` interval of the mean change (each bound is a
one-sided ``1 - alpha`` bound):

* a regression rule with tolerance ``t`` has the margin ``m = -t``:
  **fail** when ``hi < -t`` (a regression beyond the tolerance is shown: H0 mean >= -t is
  rejected at alpha; this is the error a false *block* makes), **pass** when ``lo >= -t``
  (non-inferiority is shown: H0 mean <= -t is rejected at alpha; the error of a false
  *pass*), **inconclusive** only when the interval straddles ``-t``. Only then do the
  power figures matter: the smallest detectable effect and the examples needed to resolve
  the tolerance are reported. Once the interval clears the margin there is nothing left to
  see, however small n is;
* ``min_improvement`` with a required lift ``delta`` is the mirror with ``m = +delta``:
  **pass** when ``lo >= delta``, **fail** when ``hi < delta``, inconclusive in between.

A continuous sample with no spread (every example moved by the same amount, e.g. identical
outputs) has a zero-width interval at its mean: pass when the mean is >= the margin, fail
otherwise. Binary scores never take that shortcut: "no example changed" among n is a
sample too, and shows non-inferiority only when n is large enough for the tolerance (with
no loss at all, ``n >= 52`` for a tolerance of 0.05 and ``n >= 88`` for 0.03 at alpha 0.05).

Which test decides, and why:

* **Binary metrics** (declared so by their evaluator: answer correctness, exact match): only
  the examples the candidate lost (``losses``, baseline 1 → candidate 0) and gained
  (``gains``) carry information; the mean change is ``(gains - losses) / n``.
  The *fail* side (the upper bound, the false-block error) is the **exact test on the
  discordant pairs**, as McNemar's: given ``k = losses + gains``, ``losses ~ Binomial(k,
  theta)`` and a change equal to the margin ``m`` means ``theta0 = 1/2 - m·n / (2k)``; the
  p-value is ``binomtest(losses, k, theta0, alternative="greater")`` (for ``m = 0`` exactly
  the one-sided exact McNemar test) and the upper bound is the Clopper-Pearson bound of
  ``theta`` mapped to the change (binomtest's tail and interval, computed with
  ``scipy.special``). It is conservative (measured in ``benchmarks/gate_calibration.py``).
  The *pass* side (the lower bound) is **Tango's score bound** for paired proportions: the
  conditional test takes ``k`` as given and would call 1 loss in 67 a proof that no more
  than 3 % are lost (a false pass in 67 % of samples whose true loss is 3 %); Tango's
  bound keeps that error at alpha.
* **Other metrics** use the **paired t-test / t-interval** of the mean difference
  (the numbers of ``scipy.stats.ttest_1samp``). The percentile bootstrap used before
  under-covers at the small n eval sets have (6.0 % false blocks at n = 16 for a nominal
  5 %, 4.4 % with t), and by the central limit theorem t is accurate for a mean of bounded
  scores.
* **Power** (:mod:`service.gate.power`): the minimum detectable effect at 80 % power and
  the examples needed to resolve the margin, Student quantiles with n - 1 degrees of freedom.
* **Family-wise error** (:mod:`service.gate.multiple_testing`): Holm's step-down adjusts the
  rules' *fail* p-values so that the chance of any false block across a policy stays <=
  alpha; *pass* is shown per rule at alpha.

The result says which test decided (``test``). Zero variance, n = 0 and n = 1 are handled
explicitly: no numpy or scipy warning is ever raised (the test suite turns warnings into
errors). Bootstrap intervals remain for a single sample's mean (:func:`mean_ci`, threshold
rules and aggregates), where no pairing or margin is involved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from service.gate.paired_tests import TestName, exact_binary, is_binary, no_spread, paired_t
from service.gate.power import minimum_detectable_effect, required_n

Verdict = Literal["pass", "fail", "inconclusive"]
MarginKind = Literal["regression", "improvement"]


@dataclass(frozen=True)
class PairedResult:
    """A paired candidate-vs-baseline comparison of one metric against a margin.

    ``effect`` and the interval are in oriented units: candidate minus baseline, multiplied
    by -1 for lower-is-better metrics, so negative always means the candidate is worse.
    Fields are ``None`` where n is too small to compute them (n = 0: everything; n = 1: the
    interval, p-values and power).
    """

    verdict: Verdict
    """pass: the interval clears the margin; fail: it lies below; inconclusive: straddles."""
    margin: float
    """``-tolerance`` for a regression rule, ``+delta`` for an improvement rule."""
    test: TestName
    """What decided: for binary scores the exact McNemar-type test (fail, inconclusive) or
    Tango's score bound (pass); else the paired t-test, an interval of zero width (no
    spread), or nothing (n < 2)."""
    effect: float | None
    """Mean oriented paired difference."""
    ci_low: float | None
    """Lower bound of the two-sided ``confidence`` interval = one-sided (1 - alpha) bound."""
    ci_high: float | None
    """Upper bound of the two-sided ``confidence`` interval = one-sided (1 - alpha) bound."""
    p_value: float | None
    """One-sided p-value of H0: mean >= margin (small = the change is below the margin:
    the *fail* test, the one Holm adjusts)."""
    p_pass: float | None
    """One-sided p-value of H0: mean <= margin (small = the change clears the margin)."""
    n: int
    mde: float | None
    """Minimum detectable effect at alpha with 80 % power."""
    needed_n: int | None
    """Examples needed to resolve the margin's distance from 0 at 80 % power."""
    sd: float | None
    """Sample standard deviation of the differences (ddof = 1)."""
    p_improvement: float | None
    """One-sided p-value of H0: mean <= 0 (small = significant improvement)."""
    significant_improvement: bool
    """The lower one-sided (1 - alpha) bound is above zero."""
    losses: int | None
    """Binary metrics: examples the baseline got right and the candidate wrong."""
    gains: int | None
    """Binary metrics: examples the baseline got wrong and the candidate right."""
    alpha: float
    confidence: float
    """Coverage of ``[ci_low, ci_high]``: 1 - 2·alpha."""
    higher_is_better: bool
    """Direction of the metric: the raw change is ``effect`` if True, else ``-effect``."""
    message: str
    """One human sentence: what was found, or why nothing could be concluded."""

    @property
    def tolerance(self) -> float:
        """The regression tolerance (``-margin``; negative for an improvement margin)."""
        return -self.margin

    @property
    def significant_regression(self) -> bool:
        """The change is shown to lie below the margin (the fail verdict)."""
        return self.verdict == "fail"

    @property
    def inconclusive(self) -> bool:
        return self.verdict == "inconclusive"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (all values are finite floats, ints, bools, str or None)."""
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
    result = stats.bootstrap(
        (array,),
        np.mean,
        n_resamples=n_resamples,
        method="percentile",
        confidence_level=confidence,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return MeanCI(mean, float(interval.low), float(interval.high), int(array.size), confidence)


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
    higher_is_better: bool = True,
    binary: bool = False,
) -> PairedResult:
    """Non-inferiority of paired candidate scores against the baseline, margin ``-tolerance``.

    ``candidate[i]`` and ``baseline[i]`` must be the same example's scores. See the module
    docstring for the verdicts and the tests; ``binary`` (a metric declared 0/1) selects the
    exact paired tests. Raises ``ValueError`` on mismatched lengths, non-finite scores, a
    negative tolerance, or a binary metric with a score other than 0 or 1.
    """
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    return _compare(candidate, baseline, -tolerance, "regression", alpha, higher_is_better, binary)


def improvement_comparison(
    candidate: ArrayLike,
    baseline: ArrayLike,
    *,
    delta: float,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    binary: bool = False,
) -> PairedResult:
    """The mirror rule: the paired change must clear the required lift ``delta`` (> 0).

    Raises ``ValueError`` as :func:`paired_comparison` does, or when ``delta`` <= 0.
    """
    if delta <= 0:
        raise ValueError("delta must be > 0")
    return _compare(candidate, baseline, delta, "improvement", alpha, higher_is_better, binary)


def _compare(
    candidate: ArrayLike,
    baseline: ArrayLike,
    margin: float,
    kind: MarginKind,
    alpha: float,
    higher_is_better: bool,
    binary: bool,
) -> PairedResult:
    cand = _finite_array(candidate, "candidate")
    base = _finite_array(baseline, "baseline")
    if binary and not is_binary(cand, base):
        raise ValueError("a binary metric has a score other than 0 or 1")
    diffs = oriented_differences(cand, base, higher_is_better=higher_is_better)
    n = int(diffs.size)
    common: dict[str, Any] = {
        "margin": margin,
        "n": n,
        "alpha": alpha,
        "confidence": 1.0 - 2.0 * alpha,
        "higher_is_better": higher_is_better,
    }
    if n < 2:
        why = (
            "no paired examples: nothing to compare"
            if n == 0
            else "only 1 paired example: need at least 2 to estimate the variability"
        )
        return PairedResult(
            verdict="inconclusive",
            test="none",
            effect=float(diffs[0]) if n else None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            p_pass=None,
            mde=None,
            needed_n=None,
            sd=None,
            p_improvement=None,
            significant_improvement=False,
            losses=None,
            gains=None,
            message=why,
            **common,
        )
    effect = float(np.mean(diffs))
    sd = float(np.std(diffs, ddof=1))
    if binary:
        test = exact_binary(diffs, margin, alpha)
    elif np.ptp(diffs) <= 1e-12 * max(1.0, float(np.max(np.abs(diffs)))):
        # every example moved alike (to float precision): no sampling uncertainty
        test = no_spread(effect, margin)
    else:
        test = paired_t(diffs, margin, alpha)
    verdict: Verdict = "inconclusive"
    if test.p_below < alpha:
        verdict = "fail"
    elif test.p_above < alpha or (test.name == "no spread" and effect >= margin):
        verdict = "pass"
    if test.name == "exact McNemar" and verdict == "pass":
        test = replace(test, name="Tango score")
    mde = minimum_detectable_effect(sd, n, alpha)
    needed_n = required_n(sd, abs(margin), alpha)
    losses = int(np.count_nonzero(diffs < 0)) if binary else None
    gains = int(np.count_nonzero(diffs > 0)) if binary else None
    result = PairedResult(
        verdict=verdict,
        test=test.name,
        effect=effect,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        p_value=test.p_below,
        p_pass=test.p_above,
        mde=mde,
        needed_n=needed_n,
        sd=sd,
        p_improvement=test.p_improvement,
        significant_improvement=test.p_improvement < alpha,
        losses=losses,
        gains=gains,
        message="",
        **common,
    )
    return _with_message(result, kind)


def _with_message(result: PairedResult, kind: MarginKind) -> PairedResult:
    return replace(result, message=describe(result, kind))


def describe(result: PairedResult, kind: MarginKind) -> str:
    """One sentence for a result: the change, its interval against the margin, the test."""
    if result.effect is None or result.ci_low is None or result.ci_high is None:
        return result.message
    change = f"change {result.effect:+.4g} [{result.ci_low:.4g}, {result.ci_high:.4g}]"
    if result.losses is not None:
        change += f", {result.losses} lost / {result.gains} gained of {result.n}"
    else:
        change += f", n={result.n}"
    how = f"{result.test}, p={result.p_value:.3g}" if result.verdict == "fail" else result.test
    bar = (
        f"the tolerance {result.margin:.4g}"
        if kind == "regression"
        else f"the required lift {result.margin:+.4g}"
    )
    detail = f"({change}; {how})"
    upper = f"upper bound {result.ci_high:.4g} < {result.margin:.4g}"
    lower = f"lower bound {result.ci_low:.4g} >= {result.margin:.4g}"
    if result.verdict == "fail" and kind == "regression":
        return f"regression beyond {bar}: {upper} {detail}"
    if result.verdict == "fail":
        return f"no lift of {result.margin:+.4g}: {upper} {detail}"
    if result.verdict == "pass" and kind == "regression":
        return f"no regression beyond {bar}: {lower} {detail}"
    if result.verdict == "pass":
        return f"improved by {result.effect:+.4g}: {lower} {detail}"
    need = (
        f"need ≈ {result.needed_n} examples to resolve it"
        if result.needed_n is not None
        else "a zero margin cannot be resolved under noise"
    )
    mde = f"{result.mde:.4g}" if result.mde is not None else "unknown"
    return (
        f"inconclusive: the interval straddles {bar} ({change}; {how}); the smallest "
        f"detectable effect is {mde} ({need})"
    )
