"""Gate decisions as stored things: compute and store, load (diffs: :mod:`service.diffs`).

The gate itself (:mod:`service.gate`) is pure: it judges two :class:`EvalScores` under a
policy. This module feeds it from the database and stores what it says. A decision is
computed when a candidate's evaluation and its baseline's evaluation have both
succeeded — whichever finishes last triggers it in the job's finish path, through
:func:`decide_ready` — or on an explicit request (``POST /v1/decisions``). It is stored
with the policy version and both evaluation ids. Reading a decision never computes one.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import TypeAdapter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import diffs, slices, webhooks
from service.db.models import Candidate, Evaluation, Family, GateDecision
from service.errors import DecisionNotFound, EvaluationNotFinished, EvaluationNotFound
from service.families import current_policy, policy_of
from service.gate.decision import Decision, EvalScores, RuleResult, decide
from service.jsontypes import JSONObject
from service.lifecycle import SUCCEEDED
from service.metric_kinds import binary_metrics, metric_directions
from service.queries import decisions as decision_queries
from service.queries import evaluations as evaluation_queries
from service.queries.examples import examples_by_version
from service.queries.results import model_metrics, scores_by_evaluation
from service.sweeps import measure

__all__ = [
    "binary_metrics",
    "compute_decision",
    "decide_evaluation",
    "decide_ready",
    "decision_for_evaluation",
    "decision_of",
    "decision_payload",
    "get_decision",
    "metric_directions",
    "scores_of",
    "scores_of_many",
]


# --- the scores the gate judges ------------------------------------------------------------


def scores_of_many(session: Session, evaluations: Iterable[Evaluation]) -> dict[int, EvalScores]:
    """Evaluation id → its per-example scores and model metrics, as the gate sees them.

    A fixed number of queries whatever the number of evaluations.
    """
    wanted = {evaluation.id: evaluation for evaluation in evaluations}
    examples = examples_by_version(session, {e.dataset_version_id for e in wanted.values()})
    scores = scores_by_evaluation(session, wanted)
    metrics = model_metrics(session, wanted)
    directions = metric_directions()
    binary = binary_metrics()
    out: dict[int, EvalScores] = {}
    for evaluation_id, evaluation in wanted.items():
        rows = examples[evaluation.dataset_version_id]
        out[evaluation_id] = EvalScores(
            domains={row.example_key: row.domain for row in rows},
            cohorts={row.example_key: row.cohort for row in rows},
            per_example=scores[evaluation_id],
            model_metrics=metrics[evaluation_id],
            higher_is_better=directions,
            binary_metrics=binary,
        )
    return out


def scores_of(session: Session, evaluation: Evaluation) -> EvalScores:
    """One evaluation's scores as the gate sees them."""
    return scores_of_many(session, [evaluation])[evaluation.id]


_RULES = TypeAdapter(list[RuleResult])
"""Stored rule results (JSON) back into the gate's dataclass, checked field by field."""


def decision_of(row: GateDecision) -> Decision:
    """A stored decision as the gate's :class:`Decision`."""
    return Decision(
        verdict="pass" if row.verdict == "pass" else "fail",
        rules=_RULES.validate_python(row.rules),
        summary=row.summary,
    )


# --- computing and storing -----------------------------------------------------------------


def _finished_baseline(session: Session, evaluation: Evaluation) -> Evaluation:
    """The baseline a candidate evaluation is judged against, once both have succeeded.

    Raises ``EvaluationNotFinished`` (409) for a baseline evaluation or one of the pair
    not succeeded.
    """
    if evaluation.baseline_evaluation_id is None:
        raise EvaluationNotFinished(
            f"evaluation {evaluation.id} has no baseline to compare with (it is a baseline)"
        )
    baseline = session.get_one(Evaluation, evaluation.baseline_evaluation_id)
    for ev in (evaluation, baseline):
        if ev.status != SUCCEEDED:
            raise EvaluationNotFinished(f"evaluation {ev.id} is {ev.status}, not succeeded")
    return baseline


def decide_evaluation(session: Session, evaluation: Evaluation) -> GateDecision:
    """Compute and store (or return the stored) decision of a candidate evaluation vs its
    baseline, under the family's current policy.

    Raises ``EvaluationNotFinished`` (409) for a baseline evaluation or one of the pair
    not succeeded.
    """
    baseline = _finished_baseline(session, evaluation)
    candidate = session.get_one(Candidate, evaluation.candidate_id)
    policy_row = current_policy(session, session.get_one(Family, candidate.family_id))
    existing = decision_queries.find_decision(session, evaluation.id, baseline.id, policy_row.id)
    if existing is not None:
        return existing
    scores = scores_of_many(session, [evaluation, baseline])
    policy = policy_of(policy_row)
    decision = decide(policy, scores[evaluation.id], scores[baseline.id])
    row = GateDecision(
        candidate_evaluation_id=evaluation.id,
        baseline_evaluation_id=baseline.id,
        policy_id=policy_row.id,
        verdict=decision.verdict,
        rules=[r.to_dict() for r in decision.rules],
        summary=decision.summary,
    )
    # what the sweep view and the slice summary show, computed once here: their inputs
    # never change, and reading them is then a lookup, not statistics over every score
    row.sweep_measures = measure(
        scores[evaluation.id], scores[baseline.id], policy, decision
    ).to_dict()
    row.slice_summary = slices.compute_slice_summary(session, row, None, None).to_dict()
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
            row.n_pairs = diffs.store_pairs(session, row)
            session.flush()
    except IntegrityError:  # another worker stored the same decision first
        found = decision_queries.find_decision(session, evaluation.id, baseline.id, policy_row.id)
        if found is None:
            raise
        return found
    webhooks.emit(session, candidate.family_id, webhooks.DECISION_MADE, _event(row, candidate))
    return row


def _event(row: GateDecision, candidate: Candidate) -> JSONObject:
    """The ``decision.made`` webhook's data."""
    return {
        "decision_id": row.id,
        "verdict": row.verdict,
        "summary": row.summary,
        "candidate_id": candidate.id,
        "candidate_name": candidate.name,
        "learning_rate": candidate.learning_rate,
        "sweep": candidate.sweep,
        "candidate_evaluation_id": row.candidate_evaluation_id,
        "baseline_evaluation_id": row.baseline_evaluation_id,
        "failed_rules": [
            r["rule_id"] for r in row.rules if r.get("verdict") in ("fail", "inconclusive_fail")
        ],
    }


def decide_ready(session: Session, evaluation_id: int) -> list[GateDecision]:
    """Decisions that became computable now that ``evaluation_id`` succeeded: its own (when
    its baseline already succeeded) and those of candidates waiting on it as their baseline."""
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None or evaluation.status != SUCCEEDED:
        return []
    waiting = evaluation_queries.waiting_on(session, evaluation_id)
    if evaluation.baseline_evaluation_id is not None:
        waiting.append(evaluation)
    baselines = evaluation_queries.evaluations_by_id(
        session, {ev.baseline_evaluation_id for ev in waiting if ev.baseline_evaluation_id}
    )
    decisions = []
    for ev in waiting:
        baseline = baselines.get(ev.baseline_evaluation_id or -1)
        if baseline is not None and baseline.status == SUCCEEDED:
            decisions.append(decide_evaluation(session, ev))
    return decisions


def compute_decision(session: Session, evaluation_id: int) -> GateDecision:
    """The explicit request: compute (or return) an evaluation's decision now.

    Raises ``EvaluationNotFound`` and ``EvaluationNotFinished``.
    """
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise EvaluationNotFound(f"evaluation {evaluation_id} does not exist")
    return decide_evaluation(session, evaluation)


# --- reading -------------------------------------------------------------------------------


def get_decision(session: Session, decision_id: int) -> GateDecision:
    """The stored decision with this id; raises ``DecisionNotFound``."""
    decision = session.get(GateDecision, decision_id)
    if decision is None:
        raise DecisionNotFound(f"decision {decision_id} does not exist")
    return decision


def decision_for_evaluation(session: Session, evaluation_id: int) -> GateDecision:
    """The newest stored decision of an evaluation (read only).

    Raises ``EvaluationNotFound``; ``EvaluationNotFinished`` (409) while it or its baseline
    has not succeeded, or for a baseline evaluation; ``DecisionNotFound`` when both
    succeeded but no decision was stored (``POST /v1/decisions`` computes it).
    """
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise EvaluationNotFound(f"evaluation {evaluation_id} does not exist")
    found = decision_queries.latest_decision(session, evaluation_id)
    if found is not None:
        return found
    _finished_baseline(session, evaluation)
    raise DecisionNotFound(
        f"evaluation {evaluation_id} has no stored decision; POST /v1/decisions"
        f"?evaluation_id={evaluation_id} computes it"
    )


def decision_payload(session: Session, decision: GateDecision) -> dict[str, object]:
    """A stored decision with its policy version, as the API returns it."""
    policy = decision_queries.policies_by_id(session, [decision.policy_id])[decision.policy_id]
    return {
        "id": decision.id,
        "verdict": decision.verdict,
        "summary": decision.summary,
        "policy_version": policy.version,
        "candidate_evaluation_id": decision.candidate_evaluation_id,
        "baseline_evaluation_id": decision.baseline_evaluation_id,
        "rules": decision.rules,
        "created_at": decision.created_at,
        "superseded_at": decision.superseded_at,
    }
