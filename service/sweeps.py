"""Learning-rate sweeps: one row per candidate with its label, and the recommended rate.

The labels come from :mod:`service.gate.labels` (pure, from the measured numbers). The
recommended rate is never a candidate with a significant out-of-domain regression.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from service.gate.decision import Decision, EvalScores
from service.gate.labels import (
    CandidateLabel,
    CollapseSignals,
    Label,
    classify_candidate,
    label_candidate,
    lift_metric_of,
    ood_metric_of,
    significant_ood_regression,
)
from service.gate.policy import Policy
from service.gate.scores import compare_metric
from service.gate.stats import PairedResult
from service.jsontypes import JSONObject

__all__ = [
    "CandidateLabel",
    "CollapseSignals",
    "Label",
    "SweepMeasures",
    "SweepRow",
    "classify_candidate",
    "label_candidate",
    "measure",
    "recommend",
    "sweep_row",
]


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
    ood_regression: str | None = None
    """The out-of-domain rule whose upper bound is below 0 (a significant regression of
    any size), if any: such a candidate is never recommended."""

    def to_dict(self) -> JSONObject:
        """JSON-serialisable form."""
        return asdict(self)


@dataclass(frozen=True)
class SweepMeasures:
    """The paired comparisons the sweep view plots for one decided candidate, at the
    policy's alpha: the in-domain lift of ``lift_metric``, the out-of-domain delta of the
    metric that judges forgetting and the change in hallucination over every example.

    Computed once with the decision (:func:`measure`) and stored beside it: the scores
    they come from never change.
    """

    lift_metric: str
    lift: PairedResult
    ood: PairedResult
    hallucination: PairedResult

    def to_dict(self) -> JSONObject:
        """JSON-serialisable form (what the decision row stores)."""
        return {
            "lift_metric": self.lift_metric,
            "lift": self.lift.to_dict(),
            "ood": self.ood.to_dict(),
            "hallucination": self.hallucination.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepMeasures | None:
        """The stored form back; None when it is not the current shape (then recompute)."""
        names = {f.name for f in fields(PairedResult)}
        parts = [data.get(key) for key in ("lift", "ood", "hallucination")]
        lift_metric = data.get("lift_metric")
        if not isinstance(lift_metric, str) or any(
            not isinstance(p, dict) or set(p) != names for p in parts
        ):
            return None
        lift, ood, hallucination = (PairedResult(**p) for p in parts)  # type: ignore[arg-type]
        return cls(lift_metric, lift, ood, hallucination)


def measure(
    candidate: EvalScores,
    baseline: EvalScores,
    policy: Policy,
    decision: Decision,
    lift_metric: str | None = None,
) -> SweepMeasures:
    """The sweep view's paired comparisons of a candidate against its baseline; the lift
    metric is the policy's (:func:`~service.gate.labels.lift_metric_of`) unless given."""
    metric = lift_metric or lift_metric_of(policy)
    return SweepMeasures(
        lift_metric=metric,
        lift=compare_metric(candidate, baseline, metric, policy, domain="in"),
        ood=compare_metric(
            candidate, baseline, ood_metric_of(policy, decision), policy, domain="out"
        ),
        hallucination=compare_metric(candidate, baseline, "hallucination", policy, domain="all"),
    )


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
        ood_regression=(
            None if (shown := significant_ood_regression(decision)) is None else shown.rule_id
        ),
    )


def recommend(rows: Sequence[SweepRow]) -> tuple[float | None, str]:
    """The recommended learning rate of a sweep, with the reason (or why there is none).

    Among candidates that passed the gate, are labelled ``good`` (a significant in-domain
    lift: a passing but underfit candidate buys nothing) and show no significant
    out-of-domain regression of any size, the one with the largest in-domain lift; on a
    tie, the lower learning rate.
    """
    if not rows:
        return None, "the sweep has no candidates"
    passing = [r for r in rows if r.verdict == "pass"]
    eligible = [
        r
        for r in passing
        if r.label == "good"
        and r.ood_regression is None
        and r.learning_rate is not None
        and r.in_domain_lift is not None
    ]
    if not eligible:
        labels = ", ".join(
            f"{n} {label}" for label, n in sorted(Counter(r.label for r in rows).items())
        )
        if not passing:
            return None, f"none of the {len(rows)} candidates passed the gate ({labels})"
        return None, (
            f"{len(passing)} candidate(s) passed the gate but none showed a significant "
            "in-domain lift without a significant out-of-domain regression, with a known "
            f"learning rate ({labels})"
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
