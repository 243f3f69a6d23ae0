"""The learning-rate sweep view: every candidate of a sweep with its lift, forgetting,
collapse signals, verdict, label and training-log diagnosis, plus the recommended rate.

The numbers are recomputed from the stored per-example scores (paired, same
statistics settings as the gate), so the view always agrees with the decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import decisions
from service.candidates import checkpoint_digest
from service.db.models import Candidate, Evaluation
from service.families import get_family, policy_of
from service.gate.labels import lift_metric_of, ood_metric_of
from service.gate.scores import compare_metric
from service.gate.stats import PairedResult
from service.jsontypes import JSONObject
from service.queries import decisions as decision_queries
from service.queries import evaluations as evaluation_queries
from service.remembered import Remembered, decision_key
from service.sweeps import SweepRow, recommend, sweep_row


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


Measured = tuple[PairedResult, PairedResult, PairedResult]
"""A decided candidate's in-domain lift, out-of-domain delta and hallucination change."""
MEASURED = Remembered[Measured](4096)
"""Each entry costs three paired bootstraps over every example to recompute."""


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
    recommended rate. A fixed number of queries, whatever the number of candidates."""
    family = get_family(session, family_name)
    candidates = session.scalars(
        select(Candidate)
        .where(Candidate.family_id == family.id, Candidate.sweep == sweep)
        .order_by(Candidate.learning_rate, Candidate.id)
    ).all()
    latest = evaluation_queries.latest_evaluations(session, [c.id for c in candidates])
    decided = decision_queries.latest_decisions(session, [e.id for e in latest.values()])
    policies = {
        policy_id: policy_of(row)
        for policy_id, row in decision_queries.policies_by_id(
            session, {d.policy_id for d in decided.values()}
        ).items()
    }
    keys = {
        evaluation_id: (
            decision_key(session, d),
            lift_metric or lift_metric_of(policies[d.policy_id]),
        )
        for evaluation_id, d in decided.items()
    }
    remembered = {evaluation_id: MEASURED.get(key) for evaluation_id, key in keys.items()}
    to_measure = [d for e, d in decided.items() if remembered[e] is None]
    compared = evaluation_queries.evaluations_by_id(
        session,
        {d.candidate_evaluation_id for d in to_measure}
        | {d.baseline_evaluation_id for d in to_measure},
    )
    scores = decisions.scores_of_many(session, compared.values())
    repeats = _repeats(candidates)
    shown: list[SweepCandidate] = []
    for candidate in candidates:
        if candidate.id not in repeats:
            continue  # a repeat of an earlier submission: shown on the first one's row
        evaluation = latest.get(candidate.id)
        decision_row = decided.get(evaluation.id) if evaluation else None
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
        policy = policies[decision_row.policy_id]
        metric = lift_metric or lift_metric_of(policy)
        decision = decisions.decision_of(decision_row)
        measured = remembered[evaluation.id]
        if measured is None:
            cand_scores = scores[evaluation.id]
            base_scores = scores[decision_row.baseline_evaluation_id]
            measured = MEASURED.put(
                keys[evaluation.id],
                (
                    compare_metric(cand_scores, base_scores, metric, policy, domain="in"),
                    compare_metric(
                        cand_scores,
                        base_scores,
                        ood_metric_of(policy, decision),
                        policy,
                        domain="out",
                    ),
                    compare_metric(cand_scores, base_scores, "hallucination", policy, domain="all"),
                ),
            )
        lift, ood, halluc = measured
        diagnosis = (candidate.diagnosis or {}).get("label")
        row = sweep_row(
            str(candidate.id),
            candidate.learning_rate,
            decision,
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
                lift_metric=metric,
                lift_significant=lift.significant_improvement,
                repeats=repeats[candidate.id],
            )
        )
    scored = [c.row for c in shown if c.row is not None]
    rate, reason = (
        recommend(scored)
        if scored
        else (None, "no candidate of this sweep has a gate decision yet")
    )
    return SweepView(family.name, sweep, shown, rate, reason)
