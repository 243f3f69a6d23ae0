"""The gate against the database: build scores, compute and store decisions, diff examples.

A decision is computed when a candidate's evaluation and its baseline's evaluation
have both succeeded (whichever finishes last triggers it, through
:func:`decide_ready`), under the family's current policy, and stored with the policy
version and both evaluation ids.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evaluators import registry
from service.db.models import (
    SUCCEEDED,
    Aggregate,
    Candidate,
    DatasetExample,
    Evaluation,
    Family,
    GateDecision,
    GatePolicy,
)
from service.engine.storage import scores_by_example
from service.errors import DecisionNotFound, EvaluationNotFinished, EvaluationNotFound
from service.families import current_policy, policy_of
from service.gate.decision import EvalScores, decide

MODEL_METRIC_DIRECTIONS = {"perplexity_token": False, "perplexity_word": False}


@lru_cache(maxsize=1)
def metric_directions() -> dict[str, bool]:
    """metric name → higher_is_better, from every registered evaluator."""
    directions = dict(MODEL_METRIC_DIRECTIONS)
    for name, (_, metric) in registry.metric_index().items():
        directions[name] = metric.higher_is_better
    return directions


def load_scores(session: Session, evaluation: Evaluation) -> EvalScores:
    """An evaluation's per-example scores and model metrics, as the gate sees them."""
    examples = session.execute(
        select(DatasetExample.example_key, DatasetExample.domain, DatasetExample.cohort).where(
            DatasetExample.dataset_version_id == evaluation.dataset_version_id
        )
    ).all()
    per_example = scores_by_example(session, evaluation.id)
    model_metrics: dict[str, float] = {}
    for metric, mean in session.execute(
        select(Aggregate.metric, Aggregate.mean).where(
            Aggregate.evaluation_id == evaluation.id, Aggregate.scope == "model"
        )
    ):
        model_metrics[metric] = mean
    return EvalScores(
        domains={k: d for k, d, _ in examples},
        cohorts={k: c for k, _, c in examples},
        per_example=per_example,
        model_metrics=model_metrics,
        higher_is_better=metric_directions(),
    )


def decide_evaluation(session: Session, evaluation: Evaluation) -> GateDecision:
    """Compute (or return the stored) decision of a candidate evaluation vs its baseline."""
    if evaluation.baseline_evaluation_id is None:
        raise EvaluationNotFinished(
            f"evaluation {evaluation.id} has no baseline to compare with (it is a baseline)"
        )
    baseline = session.get_one(Evaluation, evaluation.baseline_evaluation_id)
    for ev in (evaluation, baseline):
        if ev.status != SUCCEEDED:
            raise EvaluationNotFinished(f"evaluation {ev.id} is {ev.status}, not succeeded")
    candidate = session.get_one(Candidate, evaluation.candidate_id)
    policy_row = current_policy(session, session.get_one(Family, candidate.family_id))
    existing = session.scalars(
        select(GateDecision).where(
            GateDecision.candidate_evaluation_id == evaluation.id,
            GateDecision.baseline_evaluation_id == baseline.id,
            GateDecision.policy_id == policy_row.id,
        )
    ).first()
    if existing is not None:
        return existing
    policy = policy_of(policy_row)
    decision = decide(policy, load_scores(session, evaluation), load_scores(session, baseline))
    row = GateDecision(
        candidate_evaluation_id=evaluation.id,
        baseline_evaluation_id=baseline.id,
        policy_id=policy_row.id,
        verdict=decision.verdict,
        rules=[r.to_dict() for r in decision.rules],
        summary=decision.summary,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:  # another worker stored the same decision first
        found = session.scalars(
            select(GateDecision).where(
                GateDecision.candidate_evaluation_id == evaluation.id,
                GateDecision.baseline_evaluation_id == baseline.id,
                GateDecision.policy_id == policy_row.id,
            )
        ).one()
        return found
    return row


def decide_ready(session: Session, evaluation_id: int) -> list[GateDecision]:
    """Decisions that became computable now that ``evaluation_id`` finished."""
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None or evaluation.status != SUCCEEDED:
        return []
    waiting = list(
        session.scalars(
            select(Evaluation).where(
                Evaluation.baseline_evaluation_id == evaluation_id,
                Evaluation.status == SUCCEEDED,
            )
        )
    )
    if evaluation.baseline_evaluation_id is not None:
        waiting.append(evaluation)
    decisions = []
    for ev in waiting:
        baseline = session.get(Evaluation, ev.baseline_evaluation_id)
        if baseline is not None and baseline.status == SUCCEEDED:
            decisions.append(decide_evaluation(session, ev))
    return decisions


def get_decision(session: Session, decision_id: int) -> GateDecision:
    decision = session.get(GateDecision, decision_id)
    if decision is None:
        raise DecisionNotFound(f"decision {decision_id} does not exist")
    return decision


def latest_decision(session: Session, evaluation_id: int) -> GateDecision | None:
    return session.scalars(
        select(GateDecision)
        .where(GateDecision.candidate_evaluation_id == evaluation_id)
        .order_by(GateDecision.id.desc())
        .limit(1)
    ).first()


def decision_for_evaluation(session: Session, evaluation_id: int) -> GateDecision:
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise EvaluationNotFound(f"evaluation {evaluation_id} does not exist")
    found = latest_decision(session, evaluation_id)
    if found is not None:
        return found
    return decide_evaluation(session, evaluation)


def decision_payload(session: Session, decision: GateDecision) -> dict[str, Any]:
    policy = session.get_one(GatePolicy, decision.policy_id)
    return {
        "id": decision.id,
        "verdict": decision.verdict,
        "summary": decision.summary,
        "policy_version": policy.version,
        "candidate_evaluation_id": decision.candidate_evaluation_id,
        "baseline_evaluation_id": decision.baseline_evaluation_id,
        "rules": decision.rules,
        "created_at": decision.created_at,
    }
