"""The per-cohort slice summary of a gate decision: per cohort, the mean paired change of
one metric with its bootstrap interval and how many examples regressed, worst first.

It reads the pairs of :class:`service.diffs.Pairs` (the same join the diffs page). The
default summary is computed with the decision and stored on it; any other (a metric or a
domain asked for) is computed on its first request and remembered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from service.db.models import DatasetExample, GateDecision, GatePolicy
from service.diffs import DiffFilters, Pairs
from service.errors import InvalidRequest
from service.families import policy_of
from service.gate.stats import mean_ci
from service.jsontypes import JSONObject
from service.remembered import Remembered, decision_key

COMPARATIVE_KINDS = ("min_improvement", "no_regression", "out_of_domain_delta")
"""Rule kinds judged on per-example paired differences (the ones a slice summary explains)."""


@dataclass(frozen=True)
class CohortSlice:
    """One cohort's paired changes on one metric."""

    cohort: str | None
    n: int
    mean_change: float | None
    """Mean oriented change (negative = worse)."""
    ci_low: float | None
    ci_high: float | None
    """Percentile-bootstrap interval of ``mean_change`` at the policy's paired coverage."""
    n_regressed: int
    """Examples whose oriented change is below zero."""
    regressed_share: float


@dataclass(frozen=True)
class SliceSummary:
    metric: str
    domain: str | None
    confidence: float
    slices: list[CohortSlice]
    """Worst cohort (lowest mean change) first."""

    def to_dict(self) -> JSONObject:
        """JSON-serialisable form (what a decision row stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceSummary:
        """The stored form back."""
        return cls(
            metric=data["metric"],
            domain=data["domain"],
            confidence=data["confidence"],
            slices=[CohortSlice(**s) for s in data["slices"]],
        )


def default_metric(session: Session, decision: GateDecision) -> str | None:
    """The metric a slice summary explains by default: the first comparative rule's metric
    (a failed one first), else the first metric both evaluations scored."""
    rules = [r for r in decision.rules if r.get("kind") in COMPARATIVE_KINDS]
    failed = [r for r in rules if r.get("verdict") in ("fail", "inconclusive_fail")]
    for rule in (*failed, *rules):
        return str(rule["metric"])
    pairs = Pairs(DiffFilters())
    first: str | None = session.scalar(
        pairs.select(pairs.cand.metric).order_by(pairs.cand.metric).limit(1),
        pairs.values(decision),
    )
    return first


def slice_summary(
    session: Session, decision: GateDecision, metric: str | None, domain: str | None = None
) -> SliceSummary:
    """Per cohort: the mean paired change of ``metric`` with its interval and how many
    examples regressed, worst cohort first. Raises ``InvalidRequest`` for a bad domain or
    a metric the decision's evaluations did not both score.

    The default summary (no domain, the default metric) is stored with the decision; any
    other is computed on its first request and remembered.
    """
    stored = decision.slice_summary
    if stored is not None and domain is None and metric in (None, stored.get("metric")):
        return SliceSummary.from_dict(stored)
    key = (decision_key(session, decision), metric, domain)
    remembered = SLICES.get(key)
    if remembered is None:
        remembered = SLICES.put(key, compute_slice_summary(session, decision, metric, domain))
    return remembered


SLICES = Remembered[SliceSummary](1024)
"""Slice summaries by (decision, metric, domain): a bootstrap per cohort to recompute."""


def compute_slice_summary(
    session: Session, decision: GateDecision, metric: str | None, domain: str | None
) -> SliceSummary:
    """:func:`slice_summary` computed from the stored scores (one query, a bootstrap per
    cohort); ``decision`` need not be stored yet."""
    chosen = metric or default_metric(session, decision)
    policy = policy_of(session.get_one(GatePolicy, decision.policy_id))
    confidence = 1.0 - 2.0 * policy.alpha
    if chosen is None:
        return SliceSummary("", domain, confidence, [])
    pairs = Pairs(DiffFilters(chosen, domain))
    rows = session.execute(
        pairs.select(DatasetExample.cohort, pairs.delta).order_by(
            DatasetExample.cohort, pairs.cand.example_key
        ),
        pairs.values(decision),
    ).all()
    if metric is not None and not rows and domain is None:
        raise InvalidRequest(f"metric {metric!r} was not scored in both evaluations")
    by_cohort: dict[str | None, list[float]] = {}
    for cohort, delta in rows:
        by_cohort.setdefault(cohort, []).append(float(delta))
    slices = []
    for cohort, deltas in by_cohort.items():
        values = np.asarray(deltas, dtype=np.float64)
        ci = mean_ci(
            values, alpha=2.0 * policy.alpha, n_resamples=policy.n_resamples, seed=policy.seed
        )
        regressed = int(np.count_nonzero(values < 0.0))
        slices.append(
            CohortSlice(
                cohort=cohort,
                n=int(values.size),
                mean_change=ci.mean,
                ci_low=ci.ci_low,
                ci_high=ci.ci_high,
                n_regressed=regressed,
                regressed_share=regressed / values.size,
            )
        )
    slices.sort(key=lambda s: (s.mean_change or 0.0, -s.n_regressed, s.cohort or ""))
    return SliceSummary(chosen, domain, confidence, slices)
