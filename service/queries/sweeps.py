"""A sweep's candidates with their newest evaluation and decision, in one query."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Select, and_, bindparam, func, select
from sqlalchemy.orm import Session, aliased, defer

from service.db.models import Candidate, Evaluation, Family, GateDecision

Member = tuple[Candidate, Evaluation | None, GateDecision | None]


@lru_cache(maxsize=1)
def _members_statement() -> Select[int, Candidate, Evaluation, GateDecision]:
    """The statement, built once (its construction costs more than its execution)."""
    newer_evaluation, newer_decision = aliased(Evaluation), aliased(GateDecision)
    newest_evaluation = (
        select(func.max(newer_evaluation.id))
        .where(newer_evaluation.candidate_id == Candidate.id)
        .scalar_subquery()
    )
    newest_decision = (
        select(func.max(newer_decision.id))
        .where(
            newer_decision.candidate_evaluation_id == Evaluation.id,
            newer_decision.superseded_at.is_(None),
        )
        .scalar_subquery()
    )
    return (
        select(Family.id, Candidate, Evaluation, GateDecision)
        .select_from(Family)
        .outerjoin(
            Candidate,
            and_(Candidate.family_id == Family.id, Candidate.sweep == bindparam("sweep")),
        )
        .outerjoin(Evaluation, Evaluation.id == newest_evaluation)
        .outerjoin(GateDecision, GateDecision.id == newest_decision)
        .where(Family.name == bindparam("family"))
        .order_by(Candidate.learning_rate, Candidate.id)
        .options(defer(GateDecision.slice_summary))
    )


def sweep_members(session: Session, family_name: str, sweep: str) -> list[Member] | None:
    """The sweep's candidates by learning rate (then id), each with its newest evaluation
    and that evaluation's newest decision (None where there is none yet); None when the
    family does not exist. One query, answered from the candidates' (family, sweep)
    index and the evaluations' and decisions' foreign-key indexes."""
    rows = session.execute(_members_statement(), {"family": family_name, "sweep": sweep}).all()
    if not rows:
        return None
    return [
        (candidate, evaluation, decision)
        for _, candidate, evaluation, decision in rows
        if candidate is not None
    ]
