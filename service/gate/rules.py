"""Evaluation of one policy rule: the per-kind logic and the :class:`RuleResult` it returns."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from service.errors import ScoringError
from service.gate.policy import (
    AnyRule,
    MinImprovement,
    NoRegression,
    OutOfDomainDelta,
    PerplexityRatio,
    Policy,
    Threshold,
)
from service.gate.scores import EvalScores, compare_metric, paired_values, scope_text, scoped_values
from service.gate.stats import mean_ci

RuleVerdict = Literal["pass", "fail", "inconclusive_pass", "inconclusive_fail", "skipped"]
"""``skipped``: a rule left out (its evidence is absent, or stronger evidence decides)."""


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome, with the numbers behind it."""

    rule_id: str
    kind: str
    metric: str
    scope: str
    """Which examples the rule saw, e.g. "domain=out, cohort=billing" or "model"."""
    verdict: RuleVerdict
    baseline_value: float | None
    """Baseline mean (or model metric) in scope, in the metric's own units."""
    candidate_value: float | None
    """Candidate mean (or model metric) in scope, in the metric's own units."""
    effect: float | None
    """Candidate - baseline, multiplied by -1 for lower-is-better metrics: negative = worse.
    Paired mean difference for comparative rules; None for threshold rules."""
    ci_low: float | None
    ci_high: float | None
    """Interval of ``effect`` (comparative rules, coverage ``confidence``) or of the
    candidate mean (threshold rules)."""
    p_value: float | None
    """One-sided p-value of the *fail* test: the change lies below the margin (-tolerance
    for regression rules, +delta for min_improvement). Small = fail."""
    n: int | None
    """Paired (or, for thresholds, candidate) examples used; None for model metrics."""
    tolerance: float | None
    """tolerance (regression rules), delta (min_improvement), max_ratio (perplexity)."""
    min_detectable_effect: float | None
    message: str
    needed_n: int | None = None
    """Examples needed to resolve the tolerance / delta at 80 % power."""
    ratio: float | None = None
    """Candidate / baseline (perplexity_ratio rules)."""
    confidence: float | None = None
    """Coverage of ``[ci_low, ci_high]``."""
    domain: str | None = None
    """The rule's domain ("in", "out", "all"); None for model-level rules."""
    cohort: str | None = None
    test: str | None = None
    """The test that decided: "exact McNemar" (binary scores), "paired t", "no spread"
    (every example moved alike) or "none"; None for threshold and perplexity rules."""
    p_adjusted: float | None = None
    """``p_value`` after Holm's correction across the policy's paired rules."""
    losses: int | None = None
    """Binary metrics: examples the baseline got right and the candidate wrong."""
    gains: int | None = None
    """Binary metrics: examples the baseline got wrong and the candidate right."""
    warning: str | None = None
    """Something the verdict cannot show, e.g. an out-of-domain set the baseline (almost)
    always gets right, which can only lose (see :mod:`service.gate.decision`)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def _mean(values: NDArray[np.float64]) -> float | None:
    return float(np.mean(values)) if values.size else None


def _inconclusive(policy: Policy, rule: AnyRule) -> RuleVerdict:
    return (
        "inconclusive_fail" if policy.inconclusive_outcome(rule) == "fail" else "inconclusive_pass"
    )


def _no_data(policy: Policy, rule: AnyRule, scope: str, detail: str) -> RuleResult:
    return RuleResult(
        rule_id=rule.id,
        kind=rule.kind,
        metric=rule.metric,
        scope=scope,
        domain=getattr(rule, "domain", None),
        cohort=getattr(rule, "cohort", None),
        verdict=_inconclusive(policy, rule),
        baseline_value=None,
        candidate_value=None,
        effect=None,
        ci_low=None,
        ci_high=None,
        p_value=None,
        n=0,
        tolerance=getattr(rule, "tolerance", None),
        min_detectable_effect=None,
        message=f"no data for metric {rule.metric} in scope {scope} ({detail})",
    )


def _no_data_detail(
    cand_ev: EvalScores, base_ev: EvalScores, metric: str, domain: str, cohort: str | None
) -> str:
    """Why a comparative rule found no paired example."""
    has_cand = scoped_values(cand_ev, metric, domain, cohort).size > 0
    has_base = scoped_values(base_ev, metric, domain, cohort).size > 0
    if not has_cand and not has_base:
        return "neither evaluation has it"
    if not has_base:
        return "the baseline has no score for it"
    if not has_cand:
        return "the candidate has no score for it"
    return "the two evaluations share no scored example"


def _stronger_evidence(
    rule: NoRegression | OutOfDomainDelta | MinImprovement,
    cand_ev: EvalScores,
    base_ev: EvalScores,
) -> str | None:
    """The first metric of ``rule.secondary_to`` with paired data in the rule's scope."""
    if not isinstance(rule, OutOfDomainDelta):
        return None
    for metric in rule.secondary_to:
        if paired_values(cand_ev, base_ev, metric, rule.domain, rule.cohort)[0].size:
            return metric
    return None


def _comparative_rule(
    policy: Policy,
    rule: NoRegression | OutOfDomainDelta | MinImprovement,
    cand_ev: EvalScores,
    base_ev: EvalScores,
) -> RuleResult:
    """A paired rule: non-inferiority (regression rules) or the required lift (mirror)."""
    scope = scope_text(rule.domain, rule.cohort)
    cand, base = paired_values(cand_ev, base_ev, rule.metric, rule.domain, rule.cohort)
    if cand.size == 0:
        detail = _no_data_detail(cand_ev, base_ev, rule.metric, rule.domain, rule.cohort)
        missing = _no_data(policy, rule, scope, detail)
        if isinstance(rule, OutOfDomainDelta | NoRegression) and rule.when_missing == "skip":
            return replace(missing, verdict="skipped", message=f"{missing.message}: skipped")
        return missing
    if isinstance(rule, MinImprovement):
        bar = rule.delta
        result = compare_metric(
            cand_ev,
            base_ev,
            rule.metric,
            policy,
            domain=rule.domain,
            cohort=rule.cohort,
            delta=rule.delta,
        )
    else:
        bar = rule.tolerance
        result = compare_metric(
            cand_ev,
            base_ev,
            rule.metric,
            policy,
            domain=rule.domain,
            cohort=rule.cohort,
            tolerance=rule.tolerance,
        )
    verdict: RuleVerdict = (
        _inconclusive(policy, rule) if result.verdict == "inconclusive" else result.verdict
    )
    message = result.message
    stronger = _stronger_evidence(rule, cand_ev, base_ev)
    if stronger is not None:
        verdict = "skipped"
        message = f"secondary to {stronger}, which decides: {message}"
    return RuleResult(
        rule_id=rule.id,
        kind=rule.kind,
        metric=rule.metric,
        scope=scope,
        domain=rule.domain,
        cohort=rule.cohort,
        verdict=verdict,
        baseline_value=_mean(base),
        candidate_value=_mean(cand),
        effect=result.effect,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        p_value=result.p_value,
        n=result.n,
        tolerance=bar,
        min_detectable_effect=result.mde,
        message=message,
        needed_n=result.needed_n,
        confidence=result.confidence,
        test=result.test,
        losses=result.losses,
        gains=result.gains,
    )


def _bounds_text(rule: Threshold) -> str:
    parts = []
    if rule.min is not None:
        parts.append(f">= {rule.min:.4g}")
    if rule.max is not None:
        parts.append(f"<= {rule.max:.4g}")
    return " and ".join(parts)


def _outside(rule: Threshold, value: float) -> bool:
    return (rule.min is not None and value < rule.min) or (
        rule.max is not None and value > rule.max
    )


def _threshold_rule(
    policy: Policy, rule: Threshold, cand_ev: EvalScores, base_ev: EvalScores
) -> RuleResult:
    scope = scope_text(rule.domain, rule.cohort)
    values = scoped_values(cand_ev, rule.metric, rule.domain, rule.cohort)
    ci = mean_ci(values, policy.alpha, policy.n_resamples, policy.seed)
    if ci.mean is None:
        whole_model = rule.domain == "all" and rule.cohort is None
        if whole_model and rule.metric in cand_ev.model_metrics:
            return _threshold_on_model_metric(rule, cand_ev, base_ev)
        return _no_data(policy, rule, scope, "the candidate has no score for it")
    fails = _outside(rule, ci.mean)
    outcome = "outside" if fails else "within"
    return RuleResult(
        rule_id=rule.id,
        kind=rule.kind,
        metric=rule.metric,
        scope=scope,
        domain=rule.domain,
        cohort=rule.cohort,
        verdict="fail" if fails else "pass",
        baseline_value=_mean(scoped_values(base_ev, rule.metric, rule.domain, rule.cohort)),
        candidate_value=ci.mean,
        effect=None,
        ci_low=ci.ci_low,
        ci_high=ci.ci_high,
        p_value=None,
        n=ci.n,
        tolerance=None,
        min_detectable_effect=None,
        message=f"candidate mean {ci.mean:.4g} is {outcome} the bound ({_bounds_text(rule)})",
        confidence=ci.confidence,
    )


def _threshold_on_model_metric(
    rule: Threshold, cand_ev: EvalScores, base_ev: EvalScores
) -> RuleResult:
    value = cand_ev.model_metrics[rule.metric]
    fails = _outside(rule, value)
    outcome = "outside" if fails else "within"
    return RuleResult(
        rule_id=rule.id,
        kind=rule.kind,
        metric=rule.metric,
        scope="model",
        verdict="fail" if fails else "pass",
        baseline_value=base_ev.model_metrics.get(rule.metric),
        candidate_value=value,
        effect=None,
        ci_low=None,
        ci_high=None,
        p_value=None,
        n=None,
        tolerance=None,
        min_detectable_effect=None,
        message=f"candidate {rule.metric} {value:.4g} is {outcome} ({_bounds_text(rule)})",
    )


def _perplexity_rule(
    policy: Policy, rule: PerplexityRatio, cand_ev: EvalScores, base_ev: EvalScores
) -> RuleResult:
    cand, base = cand_ev.model_metrics.get(rule.metric), base_ev.model_metrics.get(rule.metric)
    if cand is None or base is None:
        missing = "candidate" if cand is None else "baseline"
        return _no_data(policy, rule, "model", f"missing from the {missing} evaluation")
    if not (math.isfinite(cand) and math.isfinite(base)) or base <= 0:
        raise ScoringError(f"{rule.metric} is not a positive finite number: {cand} vs {base}")
    ratio = cand / base
    verdict: RuleVerdict = "pass" if ratio <= rule.max_ratio else "fail"
    relation = "<=" if verdict == "pass" else ">"
    return RuleResult(
        rule_id=rule.id,
        kind=rule.kind,
        metric=rule.metric,
        scope="model",
        verdict=verdict,
        baseline_value=base,
        candidate_value=cand,
        effect=-(cand - base),
        ci_low=None,
        ci_high=None,
        p_value=None,
        n=None,
        tolerance=rule.max_ratio,
        min_detectable_effect=None,
        ratio=ratio,
        message=f"{rule.metric} ratio {ratio:.4g} {relation} {rule.max_ratio:.4g}",
    )


def evaluate_rule(
    policy: Policy, rule: AnyRule, candidate: EvalScores, baseline: EvalScores
) -> RuleResult:
    """Evaluate one rule of ``policy``. Raises ScoringError on NaN scores."""
    if isinstance(rule, NoRegression | OutOfDomainDelta | MinImprovement):
        return _comparative_rule(policy, rule, candidate, baseline)
    if isinstance(rule, Threshold):
        return _threshold_rule(policy, rule, candidate, baseline)
    return _perplexity_rule(policy, rule, candidate, baseline)
