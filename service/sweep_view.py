"""The learning-rate sweep view: every candidate of a sweep with its lift, forgetting,
collapse signals, verdict, label and training-log diagnosis, plus the recommended rate.

The paired numbers (lift, out-of-domain delta, hallucination change) are computed with
each decision from the same scores and statistics settings as the gate and stored with
it (:func:`service.sweeps.measure`), so the view agrees with the decisions and reading
it is one query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import decisions
from service.candidates import checkpoint_digest
from service.db.models import Candidate, Evaluation, GateDecision
from service.families import get_family, policy_of
from service.jsontypes import JSONObject
from service.queries import decisions as decision_queries
from service.queries import evaluations as evaluation_queries
from service.queries import sweeps as sweep_queries
from service.remembered import Remembered, decision_key
from service.sweeps import SweepMeasures, SweepRow, measure, recommend, sweep_row


@dataclass(frozen=True)
class SweepSummary:
    """One sweep of a family: how many candidates, at which learning rates."""

    sweep: str
    n_candidates: int
    learning_rates: list[float]


@dataclass(frozen=True)
class SweepCandidate:
    """One candidate of a sweep: where its latest evaluation stands and, once its gate
    decision exists, the labelled :class:`~service.sweeps.SweepRow` and the lift metric."""

    candidate_id: int
    learning_rate: float | None
    evaluation: Evaluation | None
    diagnosis: JSONObject | None
    training_log: list[JSONObject]
    decision_id: int | None = None
    row: SweepRow | None = None
    lift_metric: str | None = None
    lift_significant: bool | None = None
    repeats: list[int] = field(default_factory=list)
    """Later submissions of the same weights to this sweep, folded into this row."""
    rules: list[JSONObject] = field(default_factory=list)
    """The decision's rule results, as stored."""


MEASURED = Remembered[SweepMeasures](4096)
"""Numbers of decisions stored without them (or for another lift metric), by (decision,
lift metric): each costs reading both evaluations' scores to recompute."""


@dataclass(frozen=True)
class SweepView:
    family: str
    sweep: str
    candidates: list[SweepCandidate]
    """By learning rate."""
    recommended_rate: float | None
    recommendation_reason: str


def list_sweeps(session: Session, family_name: str) -> list[SweepSummary]:
    """The family's sweeps; a repeated submission of the same weights counts once."""
    family = get_family(session, family_name)
    by_sweep: dict[str, list[Candidate]] = {}
    for candidate in session.scalars(
        select(Candidate).where(Candidate.family_id == family.id, Candidate.sweep.is_not(None))
    ):
        by_sweep.setdefault(candidate.sweep or "", []).append(candidate)
    out: list[SweepSummary] = []
    for sweep, members in sorted(by_sweep.items()):
        firsts = _repeats(members)
        rates = sorted(
            c.learning_rate for c in members if c.id in firsts and c.learning_rate is not None
        )
        out.append(SweepSummary(sweep, len(rates), rates))
    return out


def _repeats(candidates: Sequence[Candidate]) -> dict[int, list[int]]:
    """First submission of each set of weights -> the ids of its later repeats.

    Weights are the same when the checkpoint digest over every file matches; a candidate
    without recorded digests is its own weights.
    """
    first: dict[str, int] = {}
    out: dict[int, list[int]] = {}
    for candidate in sorted(candidates, key=lambda c: c.id):
        key = checkpoint_digest(candidate.digests) if candidate.digests else f"id:{candidate.id}"
        if key in first:
            out[first[key]].append(candidate.id)
        else:
            first[key] = candidate.id
            out[candidate.id] = []
    return out


def sweep_view(
    session: Session, family_name: str, sweep: str, *, lift_metric: str | None = None
) -> SweepView:
    """Every candidate of the sweep with its latest evaluation and decision, and the
    recommended rate.

    One query: the paired numbers are stored with each decision. Only a decision stored
    before they were, or a ``lift_metric`` other than the policy's, has them computed from
    the scores (a fixed number of queries for the whole sweep, then remembered).
    """
    members = sweep_queries.sweep_members(session, family_name, sweep)
    if members is None:
        get_family(session, family_name)  # raises FamilyNotFound
        members = []
    candidates = [candidate for candidate, _, _ in members]
    decided = {e.id: d for _, e, d in members if e is not None and d is not None}
    measured = {
        e: found for e, d in decided.items() if (found := _stored(d, lift_metric)) is not None
    }
    missing = {e: d for e, d in decided.items() if e not in measured}
    if missing:
        measured |= _measure(session, missing, lift_metric)
    repeats = _repeats(candidates)
    shown: list[SweepCandidate] = []
    for candidate, evaluation, decision_row in members:
        if candidate.id not in repeats:
            continue  # a repeat of an earlier submission: shown on the first one's row
        if evaluation is None or decision_row is None:
            shown.append(
                SweepCandidate(
                    candidate_id=candidate.id,
                    learning_rate=candidate.learning_rate,
                    evaluation=evaluation,
                    diagnosis=candidate.diagnosis,
                    training_log=candidate.training_log or [],
                    repeats=repeats[candidate.id],
                )
            )
            continue
        found = measured[evaluation.id]
        lift, ood, halluc = found.lift, found.ood, found.hallucination
        diagnosis = (candidate.diagnosis or {}).get("label")
        row = sweep_row(
            str(candidate.id),
            candidate.learning_rate,
            decisions.decision_of(decision_row),
            lift=lift if lift.n else None,
            ood=ood if ood.n else None,
            hallucination=halluc if halluc.n else None,
            training_diagnosis=diagnosis if isinstance(diagnosis, str) else None,
        )
        shown.append(
            SweepCandidate(
                candidate_id=candidate.id,
                learning_rate=candidate.learning_rate,
                evaluation=evaluation,
                diagnosis=candidate.diagnosis,
                training_log=candidate.training_log or [],
                decision_id=decision_row.id,
                row=row,
                lift_metric=found.lift_metric,
                lift_significant=lift.significant_improvement,
                repeats=repeats[candidate.id],
                rules=decision_row.rules,
            )
        )
    scored = [c.row for c in shown if c.row is not None]
    rate, reason = (
        recommend(scored)
        if scored
        else (None, "no candidate of this sweep has a gate decision yet")
    )
    return SweepView(family_name, sweep, shown, rate, reason)


def _stored(decision: GateDecision, lift_metric: str | None) -> SweepMeasures | None:
    """The decision's stored numbers, if stored and for the wanted lift metric."""
    if decision.sweep_measures is None:
        return None
    stored = SweepMeasures.from_dict(decision.sweep_measures)
    if stored is None or (lift_metric is not None and lift_metric != stored.lift_metric):
        return None
    return stored


def _measure(
    session: Session, decided: dict[int, GateDecision], lift_metric: str | None
) -> dict[int, SweepMeasures]:
    """Evaluation id → its numbers computed from the scores (remembered per process)."""
    keys = {e: (decision_key(session, d), lift_metric) for e, d in decided.items()}
    out = {e: found for e, key in keys.items() if (found := MEASURED.get(key)) is not None}
    todo = {e: d for e, d in decided.items() if e not in out}
    if not todo:
        return out
    policies = decision_queries.policies_by_id(session, {d.policy_id for d in todo.values()})
    compared = evaluation_queries.evaluations_by_id(
        session,
        {d.candidate_evaluation_id for d in todo.values()}
        | {d.baseline_evaluation_id for d in todo.values()},
    )
    scores = decisions.scores_of_many(session, compared.values())
    for evaluation_id, d in todo.items():
        out[evaluation_id] = MEASURED.put(
            keys[evaluation_id],
            measure(
                scores[d.candidate_evaluation_id],
                scores[d.baseline_evaluation_id],
                policy_of(policies[d.policy_id]),
                decisions.decision_of(d),
                lift_metric,
            ),
        )
    return out
