"""Learning-rate sweeps: a label per candidate from its measured numbers, and a recommended rate.

Labels are derived from what was measured, never from the learning rate itself, in this
order of precedence:

1. ``collapse`` - the model broke: a threshold rule on a collapse metric (empty outputs,
   repetition) failed, the perplexity ratio blew up (> ``PERPLEXITY_BLOWUP`` times the
   policy's ``max_ratio``), or the raw signals are extreme (>= 50 % empty outputs or mean
   repetition >= 0.5).
2. ``forgetting`` - a significant in-domain lift, but an out-of-domain regression rule
   (``out_of_domain_delta``, or ``no_regression`` on domain "out") failed outright, or failed
   as inconclusive with its point estimate already beyond the tolerance.
3. ``underfit`` - no significant in-domain lift (lower one-sided bound not above 0).
4. ``good`` - otherwise.

The label describes the training outcome; the gate verdict is separate (a ``good`` candidate
may still fail, e.g. on in-domain hallucination).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from service.gate.decision import Decision, RuleResult
from service.gate.stats import PairedResult

Label = Literal["underfit", "good", "forgetting", "collapse"]

COLLAPSE_METRICS = frozenset({"empty_output", "repetition"})
PERPLEXITY_BLOWUP = 2.0
"""A perplexity ratio above this multiple of the policy's ``max_ratio`` is a collapse."""
DEFAULT_MAX_RATIO = 1.10
"""Used for the blow-up check when the decision has no perplexity_ratio rule."""
EMPTY_OUTPUT_COLLAPSE = 0.5
REPETITION_COLLAPSE = 0.5


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
        """Read the signals off a decision's threshold and perplexity_ratio rules."""
        values: dict[str, float | None] = {}
        for rule in decision.rules:
            if rule.kind == "threshold" and rule.metric in COLLAPSE_METRICS:
                values.setdefault(rule.metric, rule.candidate_value)
            if rule.kind == "perplexity_ratio":
                values.setdefault("perplexity_ratio", rule.ratio)
        return cls(**values)


@dataclass(frozen=True)
class CandidateLabel:
    """A sweep label and the measured reason for it."""

    label: Label
    reason: str


def _is_out_of_domain_rule(rule: RuleResult) -> bool:
    return rule.kind == "out_of_domain_delta" or (
        rule.kind == "no_regression" and rule.domain == "out"
    )


def _regressed(rule: RuleResult) -> bool:
    """An out-of-domain rule that failed, or failed as inconclusive while its point
    estimate is already past the tolerance (the data lean to forgetting, n is short)."""
    if rule.verdict == "fail":
        return True
    return (
        rule.verdict == "inconclusive_fail"
        and rule.effect is not None
        and rule.tolerance is not None
        and rule.effect < -rule.tolerance
    )


def _collapse_reason(decision: Decision, signals: CollapseSignals) -> str | None:
    for rule in decision.rules:
        if rule.kind == "threshold" and rule.metric in COLLAPSE_METRICS and rule.verdict == "fail":
            return f"collapse threshold {rule.metric} failed: {rule.message}"
    max_ratio = next(
        (r.tolerance for r in decision.rules if r.kind == "perplexity_ratio" and r.tolerance),
        DEFAULT_MAX_RATIO,
    )
    ratio = signals.perplexity_ratio
    if ratio is not None and ratio > PERPLEXITY_BLOWUP * max_ratio:
        return f"perplexity ratio {ratio:.3g} > {PERPLEXITY_BLOWUP:g} x the allowed {max_ratio:g}"
    if signals.empty_output is not None and signals.empty_output >= EMPTY_OUTPUT_COLLAPSE:
        return f"{signals.empty_output:.0%} of outputs are empty"
    if signals.repetition is not None and signals.repetition >= REPETITION_COLLAPSE:
        return f"mean repetition {signals.repetition:.3g} >= {REPETITION_COLLAPSE:g}"
    return None


def classify_candidate(
    decision: Decision, lift: PairedResult | None, signals: CollapseSignals | None = None
) -> CandidateLabel:
    """Label a sweep candidate (see the module docstring for the rules and precedence).

    ``lift`` is the paired in-domain comparison of the family's target metric (e.g.
    :func:`service.gate.decision.compare_metric` with ``domain="in"``); ``None`` when it
    could not be measured. ``signals`` default to those read off the decision.
    """
    signals = signals if signals is not None else CollapseSignals.from_decision(decision)
    collapse = _collapse_reason(decision, signals)
    if collapse:
        return CandidateLabel("collapse", collapse)
    if lift is None or lift.effect is None:
        return CandidateLabel("underfit", "no in-domain lift could be measured")
    lift_text = f"in-domain lift {lift.effect:+.4g}" + (
        f" [{lift.ci_low:.4g}, {lift.ci_high:.4g}]" if lift.ci_low is not None else ""
    )
    if not lift.significant_improvement:
        return CandidateLabel("underfit", f"no significant {lift_text}")
    forgotten = [r for r in decision.rules if _is_out_of_domain_rule(r) and _regressed(r)]
    if forgotten:
        return CandidateLabel(
            "forgetting", f"{lift_text}, but {forgotten[0].rule_id}: {forgotten[0].message}"
        )
    return CandidateLabel("good", f"significant {lift_text}, no out-of-domain regression")


def label_candidate(
    decision: Decision, lift: PairedResult | None, signals: CollapseSignals | None = None
) -> Label:
    """The label of :func:`classify_candidate` alone."""
    return classify_candidate(decision, lift, signals).label


@dataclass(frozen=True)
class SweepRow:
    """What the sweep view shows for one candidate. Effects are oriented (negative = worse)
    except ``hallucination_change``, the raw change in hallucination share (positive = more)."""

    candidate_id: str
    learning_rate: float | None
    verdict: Literal["pass", "fail"]
    label: Label
    label_reason: str
    in_domain_lift: float | None
    lift_ci_low: float | None
    lift_ci_high: float | None
    ood_delta: float | None
    ood_ci_low: float | None
    ood_ci_high: float | None
    hallucination_change: float | None
    perplexity_ratio: float | None
    empty_output: float | None
    repetition: float | None
    training_diagnosis: str | None = None
    """Label of :func:`service.traininglog.diagnose` on the candidate's log, if any."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def _raw_change(result: PairedResult | None) -> float | None:
    if result is None or result.effect is None:
        return None
    return result.effect if result.higher_is_better else 0.0 - result.effect


def sweep_row(
    candidate_id: str,
    learning_rate: float | None,
    decision: Decision,
    *,
    lift: PairedResult | None,
    ood: PairedResult | None = None,
    hallucination: PairedResult | None = None,
    signals: CollapseSignals | None = None,
    training_diagnosis: str | None = None,
) -> SweepRow:
    """Assemble a sweep row, labelling the candidate with :func:`classify_candidate`."""
    signals = signals if signals is not None else CollapseSignals.from_decision(decision)
    labelled = classify_candidate(decision, lift, signals)
    return SweepRow(
        candidate_id=candidate_id,
        learning_rate=learning_rate,
        verdict=decision.verdict,
        label=labelled.label,
        label_reason=labelled.reason,
        in_domain_lift=lift.effect if lift else None,
        lift_ci_low=lift.ci_low if lift else None,
        lift_ci_high=lift.ci_high if lift else None,
        ood_delta=ood.effect if ood else None,
        ood_ci_low=ood.ci_low if ood else None,
        ood_ci_high=ood.ci_high if ood else None,
        hallucination_change=_raw_change(hallucination),
        perplexity_ratio=signals.perplexity_ratio,
        empty_output=signals.empty_output,
        repetition=signals.repetition,
        training_diagnosis=training_diagnosis,
    )


def recommend(rows: Sequence[SweepRow]) -> tuple[float | None, str]:
    """The recommended learning rate of a sweep, with the reason (or why there is none).

    Among candidates that passed the gate *and* are labelled ``good`` (a significant
    in-domain lift: a passing but underfit candidate buys nothing), the one with the
    largest in-domain lift; on a tie, the lower learning rate.
    """
    if not rows:
        return None, "the sweep has no candidates"
    passing = [r for r in rows if r.verdict == "pass"]
    eligible = [
        r
        for r in passing
        if r.label == "good" and r.learning_rate is not None and r.in_domain_lift is not None
    ]
    if not eligible:
        labels = ", ".join(
            f"{n} {label}" for label, n in sorted(Counter(r.label for r in rows).items())
        )
        if not passing:
            return None, f"none of the {len(rows)} candidates passed the gate ({labels})"
        return None, (
            f"{len(passing)} candidate(s) passed the gate but none showed a significant "
            f"in-domain lift with a known learning rate ({labels})"
        )
    best_lift = max(r.in_domain_lift or 0.0 for r in eligible)
    tied = [
        r
        for r in eligible
        if math.isclose(r.in_domain_lift or 0.0, best_lift, rel_tol=1e-9, abs_tol=1e-12)
    ]
    best = min(tied, key=lambda r: r.learning_rate or 0.0)
    interval = (
        f" [{best.lift_ci_low:.4g}, {best.lift_ci_high:.4g}]"
        if best.lift_ci_low is not None and best.lift_ci_high is not None
        else ""
    )
    tie_note = f"; lowest of {len(tied)} tied rates" if len(tied) > 1 else ""
    return best.learning_rate, (
        f"learning rate {best.learning_rate:g} (candidate {best.candidate_id}): largest "
        f"in-domain lift {best_lift:+.4g}{interval} among {len(eligible)} passing candidate(s) "
        f"with a significant lift{tie_note}"
    )
