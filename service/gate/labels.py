"""Sweep labels: what a candidate's training did, named from its measured numbers.

Never from the learning rate itself. In this order of precedence:

1. ``collapse`` - degenerate output, on a degeneration metric (``COLLAPSE_METRICS``: the
   collapse evaluator's empty outputs and repetition): a threshold rule on one failed; or a
   regression rule on one (``no_regression``, ``out_of_domain_delta``, any domain) regressed
   as an out-of-domain rule must for ``forgetting`` (failed, or inconclusive with its point
   estimate past the tolerance) - a policy may guard collapse by the change against the
   baseline rather than by an absolute cap; or the raw signals are extreme (>= 50 % empty
   outputs, mean repetition >= 0.5). Ahead of forgetting and underfit: a looping model has
   no lift and may lose its out-of-domain answers, but those are symptoms.
   A perplexity blow-up counts toward collapse only *together with* degenerate output.
2. ``forgetting`` - an out-of-domain rule regressed (it failed, or it is inconclusive
   while its point estimate is already past the tolerance - whether the policy lets an
   inconclusive rule pass or fail, and whether Holm's correction made it inconclusive, is
   the gate's business, not the label's), **with or without** an
   in-domain lift (the reason says which); or held-out perplexity blew up
   (> ``PERPLEXITY_BLOWUP`` x the allowed ratio) while the answers stay fluent: the model
   no longer predicts general text it used to.
3. ``underfit`` - no significant in-domain lift (the lower one-sided bound is not above 0).
4. ``good`` - otherwise. A ``good`` candidate that the gate failed carries the failing rule
   in its reason, and one with a significant out-of-domain loss inside the tolerance says so
   (it is never recommended): the label describes the training, the verdict is the gate's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.gate.decision import Decision, RuleResult
from service.gate.policy import MinImprovement, OutOfDomainDelta, Policy
from service.gate.stats import PairedResult

Label = Literal["underfit", "good", "forgetting", "collapse"]

COLLAPSE_METRICS = frozenset({"empty_output", "repetition"})
PERPLEXITY_BLOWUP = 2.0
"""A perplexity ratio above this multiple of the policy's ``max_ratio`` is a blow-up."""
DEFAULT_MAX_RATIO = 1.10
"""Used for the blow-up check when the decision has no perplexity_ratio rule."""
EMPTY_OUTPUT_COLLAPSE = 0.5
REPETITION_COLLAPSE = 0.5
DEFAULT_LIFT_METRIC = "token_f1"
DEFAULT_OOD_METRIC = "relevance_reference"
FAILING = frozenset({"fail", "inconclusive_fail"})
REGRESSION_KINDS = frozenset({"no_regression", "out_of_domain_delta"})
"""Comparative rule kinds whose failure is a regression against the baseline."""


def lift_metric_of(policy: Policy) -> str:
    """The in-domain target metric: the policy's first min_improvement rule, else token F1."""
    for rule in policy.rules:
        if isinstance(rule, MinImprovement):
            return rule.metric
    return DEFAULT_LIFT_METRIC


def ood_metric_of(policy: Policy, decision: Decision | None = None) -> str:
    """The out-of-domain metric that judges forgetting: the first out_of_domain_delta rule
    the decision did not skip (the strongest evidence present), else the policy's first."""
    if decision is not None:
        for result in decision.rules:
            if result.kind == "out_of_domain_delta" and result.verdict != "skipped":
                return result.metric
    for rule in policy.rules:
        if isinstance(rule, OutOfDomainDelta):
            return rule.metric
    return DEFAULT_OOD_METRIC


@dataclass(frozen=True)
class CollapseSignals:
    """The candidate's raw degeneration numbers (``None`` = not measured)."""

    empty_output: float | None = None
    """Share of empty outputs (candidate mean of ``empty_output``)."""
    repetition: float | None = None
    """Candidate mean of ``repetition``."""
    perplexity_ratio: float | None = None
    """Candidate / baseline held-out perplexity."""

    @classmethod
    def from_decision(cls, decision: Decision) -> CollapseSignals:
        """Read the signals off a decision's threshold and perplexity_ratio rules, and off
        its regression rules on a collapse metric where no threshold rule measured it (the
        widest scope first: every example, then a domain, then a cohort)."""
        values: dict[str, float | None] = {}
        for rule in decision.rules:
            if rule.kind == "threshold" and rule.metric in COLLAPSE_METRICS:
                values.setdefault(rule.metric, rule.candidate_value)
            if rule.kind == "perplexity_ratio":
                values.setdefault("perplexity_ratio", rule.ratio)
        compared = [
            r
            for r in decision.rules
            if r.kind in REGRESSION_KINDS
            and r.metric in COLLAPSE_METRICS
            and r.candidate_value is not None
        ]
        for rule in sorted(compared, key=_breadth):
            values.setdefault(rule.metric, rule.candidate_value)
        return cls(**values)


def _breadth(rule: RuleResult) -> int:
    """0 for every example, 1 for one domain, 2 for a cohort (sort key: widest first)."""
    return 2 if rule.cohort else (0 if rule.domain in (None, "all") else 1)


@dataclass(frozen=True)
class CandidateLabel:
    """A sweep label and the measured reason for it."""

    label: Label
    reason: str


def is_out_of_domain_rule(rule: RuleResult) -> bool:
    """A rule that judges the out-of-domain examples and decided (was not skipped)."""
    return rule.verdict != "skipped" and (
        rule.kind == "out_of_domain_delta"
        or (rule.kind == "no_regression" and rule.domain == "out")
    )


def regressed(rule: RuleResult) -> bool:
    """An out-of-domain rule that failed, or is inconclusive (either way) while its point
    estimate is already past the tolerance (the data lean to forgetting, n is short)."""
    if rule.verdict == "fail":
        return True
    return (
        rule.verdict in ("inconclusive_fail", "inconclusive_pass")
        and rule.effect is not None
        and rule.tolerance is not None
        and rule.effect < -rule.tolerance
    )


def significant_ood_regression(decision: Decision) -> RuleResult | None:
    """The first deciding out-of-domain rule whose upper bound is below 0 (a regression
    shown at alpha, of any size), else None."""
    for rule in decision.rules:
        if is_out_of_domain_rule(rule) and rule.ci_high is not None and rule.ci_high < 0:
            return rule
    return None


def _degenerate(decision: Decision, signals: CollapseSignals) -> str | None:
    for rule in decision.rules:
        if rule.kind == "threshold" and rule.metric in COLLAPSE_METRICS and rule.verdict == "fail":
            return f"collapse threshold {rule.metric} failed: {rule.message}"
    for rule in decision.rules:
        if rule.kind in REGRESSION_KINDS and rule.metric in COLLAPSE_METRICS and regressed(rule):
            return f"{_rise_text(rule)}; {rule.rule_id}: {rule.message}"
    if signals.empty_output is not None and signals.empty_output >= EMPTY_OUTPUT_COLLAPSE:
        return f"{signals.empty_output:.0%} of outputs are empty"
    if signals.repetition is not None and signals.repetition >= REPETITION_COLLAPSE:
        return f"mean repetition {signals.repetition:.3g} >= {REPETITION_COLLAPSE:g}"
    return None


def _blowup(decision: Decision, signals: CollapseSignals) -> str | None:
    max_ratio = next(
        (r.tolerance for r in decision.rules if r.kind == "perplexity_ratio" and r.tolerance),
        DEFAULT_MAX_RATIO,
    )
    ratio = signals.perplexity_ratio
    if ratio is not None and ratio > PERPLEXITY_BLOWUP * max_ratio:
        return f"perplexity ratio {ratio:.3g} > {PERPLEXITY_BLOWUP:g} x the allowed {max_ratio:g}"
    return None


def _rise_text(rule: RuleResult) -> str:
    """``"repetition rose from 0 to 0.9 (+0.9 [0.82, 0.98])"``: a collapse metric's change in its
    own units (a rise is worse: every collapse metric is lower-is-better)."""
    if rule.baseline_value is None or rule.candidate_value is None or rule.effect is None:
        return f"{rule.metric} regressed ({_change_text(rule)})"
    interval = (
        f" [{-rule.ci_high:+.4g}, {-rule.ci_low:+.4g}]"
        if rule.ci_low is not None and rule.ci_high is not None
        else ""
    )
    return (
        f"{rule.metric} rose from {rule.baseline_value:.3g} to {rule.candidate_value:.3g} "
        f"({-rule.effect:+.4g}{interval})"
    )


def _lift_text(lift: PairedResult | None) -> str:
    if lift is None or lift.effect is None:
        return "no in-domain lift measured"
    interval = f" [{lift.ci_low:.4g}, {lift.ci_high:.4g}]" if lift.ci_low is not None else ""
    kind = "significant" if lift.significant_improvement else "no significant"
    return f"{kind} in-domain lift {lift.effect:+.4g}{interval}"


def _change_text(rule: RuleResult) -> str:
    interval = (
        f" [{rule.ci_low:.4g}, {rule.ci_high:.4g}]"
        if rule.ci_low is not None and rule.ci_high is not None
        else ""
    )
    return f"change {rule.effect:+.4g}{interval}" if rule.effect is not None else "no change"


def classify_candidate(
    decision: Decision, lift: PairedResult | None, signals: CollapseSignals | None = None
) -> CandidateLabel:
    """Label a sweep candidate (see the module docstring for the cases and precedence).

    ``lift`` is the paired in-domain comparison of the family's target metric
    (:func:`service.gate.scores.compare_metric` with ``domain="in"``); ``None`` when it
    could not be measured. ``signals`` default to those read off the decision.
    """
    signals = signals if signals is not None else CollapseSignals.from_decision(decision)
    lift_text = _lift_text(lift)
    degenerate, blowup = _degenerate(decision, signals), _blowup(decision, signals)
    if degenerate:
        with_blowup = f", with {blowup}" if blowup else ""
        return CandidateLabel("collapse", f"degenerate output: {degenerate}{with_blowup}")
    forgotten = [r for r in decision.rules if is_out_of_domain_rule(r) and regressed(r)]
    if forgotten:
        rule = forgotten[0]
        return CandidateLabel("forgetting", f"{rule.rule_id}: {rule.message} ({lift_text})")
    if blowup:
        return CandidateLabel("forgetting", f"{blowup} while the outputs stay fluent ({lift_text})")
    if lift is None or not lift.significant_improvement:
        return CandidateLabel("underfit", lift_text)
    loss = significant_ood_regression(decision)
    ood_text = (
        "no out-of-domain regression"
        if loss is None
        else f"a significant out-of-domain loss within the tolerance on {loss.rule_id} "
        f"({_change_text(loss)})"
    )
    failed = [r for r in decision.rules if r.verdict in FAILING]
    if decision.verdict == "fail" and failed:
        return CandidateLabel(
            "good",
            f"{lift_text}, {ood_text}; the gate failed on {failed[0].rule_id}: {failed[0].message}",
        )
    return CandidateLabel("good", f"{lift_text}, {ood_text}")


def label_candidate(
    decision: Decision, lift: PairedResult | None, signals: CollapseSignals | None = None
) -> Label:
    """The label of :func:`classify_candidate` alone."""
    return classify_candidate(decision, lift, signals).label
