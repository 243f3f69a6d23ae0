"""Per-example diffs of a gate decision and the per-cohort slice summary over them.

Both read the two evaluations' stored scores in SQL: the candidate's and the baseline's
score of the same example and metric are paired by a join on the unique
``(evaluation_id, example_key, metric)`` index, the oriented change is computed in the
query (negated for lower-is-better metrics, so negative always means worse), and the
database sorts and pages. Only the page's outputs are read back, never a whole evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session, aliased

from service.db.models import DatasetExample, Evaluation, GateDecision, GatePolicy
from service.db.models import Score as ScoreRow
from service.errors import InvalidRequest
from service.families import policy_of
from service.gate.stats import mean_ci
from service.jsontypes import JSONObject
from service.metric_kinds import metric_directions
from service.queries.examples import examples_by_key
from service.queries.results import outputs_by_evaluation
from service.remembered import Remembered, decision_key

MAX_PAGE = 500
COMPARATIVE_KINDS = ("min_improvement", "no_regression", "out_of_domain_delta")
"""Rule kinds judged on per-example paired differences (the ones a slice summary explains)."""


@dataclass(frozen=True)
class DiffFilters:
    """Which paired scores to look at; ``None`` = all."""

    metric: str | None = None
    domain: str | None = None
    cohort: str | None = None

    def __post_init__(self) -> None:
        if self.domain is not None and self.domain not in ("in", "out"):
            raise InvalidRequest(f"domain must be 'in' or 'out', not {self.domain!r}")


@dataclass(frozen=True)
class ExampleDiff:
    example_id: str
    domain: str
    cohort: str | None
    input: str
    reference: str | None
    context: str | None
    metric: str
    baseline_output: str
    candidate_output: str
    baseline_score: float
    candidate_score: float
    delta: float
    """Oriented: candidate − baseline, negated for lower-is-better metrics (negative = worse)."""


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


def _oriented_delta(cand: Any, base: Any) -> ColumnElement[float]:
    lower = sorted(m for m, higher in metric_directions().items() if not higher)
    raw = cand.value - base.value
    if not lower:
        return raw  # type: ignore[no-any-return]
    return case((cand.metric.in_(lower), base.value - cand.value), else_=raw)


class _Pairs:
    """The aliased tables of one paired-scores query."""

    def __init__(self, session: Session, decision: GateDecision, filters: DiffFilters) -> None:
        self.cand = aliased(ScoreRow, name="cand")
        self.base = aliased(ScoreRow, name="base")
        self.delta = _oriented_delta(self.cand, self.base).label("delta")
        self.decision = decision
        self.filters = filters
        self.dataset_version_id: int = session.scalars(
            select(Evaluation.dataset_version_id).where(
                Evaluation.id == decision.candidate_evaluation_id
            )
        ).one()

    def select(self, *columns: Any) -> Select[Any]:
        cand, base, f = self.cand, self.base, self.filters
        query = (
            select(*columns)
            .select_from(cand)
            .join(
                base,
                and_(
                    base.evaluation_id == self.decision.baseline_evaluation_id,
                    base.example_key == cand.example_key,
                    base.metric == cand.metric,
                ),
            )
            .join(
                DatasetExample,
                and_(
                    DatasetExample.dataset_version_id == self.dataset_version_id,
                    DatasetExample.example_key == cand.example_key,
                ),
            )
            .where(cand.evaluation_id == self.decision.candidate_evaluation_id)
        )
        if f.metric is not None:
            query = query.where(cand.metric == f.metric)
        if f.domain is not None:
            query = query.where(DatasetExample.domain == f.domain)
        if f.cohort is not None:
            query = query.where(DatasetExample.cohort == f.cohort)
        return query


def example_diffs(
    session: Session,
    decision: GateDecision,
    filters: DiffFilters = DiffFilters(),
    *,
    offset: int = 0,
    limit: int = 50,
) -> tuple[int, list[ExampleDiff]]:
    """Per-example paired changes, most regressed first; returns (total, page).

    Raises ``InvalidRequest`` for a bad page or domain.
    """
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequest(f"limit must be within 1..{MAX_PAGE} and offset ≥ 0")
    pairs = _Pairs(session, decision, filters)
    cand, base = pairs.cand, pairs.base
    ranked = session.execute(
        pairs.select(
            cand.example_key,
            cand.metric,
            cand.value,
            base.value,
            pairs.delta,
            func.count().over(),
        )
        .order_by(pairs.delta, cand.metric, cand.example_key)
        .offset(offset)
        .limit(limit)
    ).all()
    # the window count rides on the one join; past the last page it needs its own query
    total = ranked[0][5] if ranked else session.scalar(pairs.select(func.count())) or 0
    keys = [row[0] for row in ranked]
    examples = examples_by_key(session, pairs.dataset_version_id, keys)
    cand_id, base_id = decision.candidate_evaluation_id, decision.baseline_evaluation_id
    outputs = outputs_by_evaluation(session, [cand_id, base_id], keys)
    return total, [
        ExampleDiff(
            example_id=key,
            domain=examples[key].domain,
            cohort=examples[key].cohort,
            input=examples[key].input,
            reference=examples[key].reference,
            context=examples[key].context,
            metric=metric,
            baseline_output=outputs[base_id].get(key, ""),
            candidate_output=outputs[cand_id].get(key, ""),
            baseline_score=base_value,
            candidate_score=cand_value,
            delta=float(delta),
        )
        for key, metric, cand_value, base_value, delta, _ in ranked
    ]


def default_metric(session: Session, decision: GateDecision) -> str | None:
    """The metric a slice summary explains by default: the first comparative rule's metric
    (a failed one first), else the first metric both evaluations scored."""
    rules = [r for r in decision.rules if r.get("kind") in COMPARATIVE_KINDS]
    failed = [r for r in rules if r.get("verdict") in ("fail", "inconclusive_fail")]
    for rule in (*failed, *rules):
        return str(rule["metric"])
    pairs = _Pairs(session, decision, DiffFilters())
    first: str | None = session.scalar(
        pairs.select(pairs.cand.metric).order_by(pairs.cand.metric).limit(1)
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
    pairs = _Pairs(session, decision, DiffFilters(chosen, domain))
    rows = session.execute(
        pairs.select(DatasetExample.cohort, pairs.delta).order_by(
            DatasetExample.cohort, pairs.cand.example_key
        )
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
