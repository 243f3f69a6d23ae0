"""Stored gate decisions: the latest of an evaluation, the one of a (pair, policy), and the
mark a re-scoring leaves on the ones it makes stale."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from service.db.base import utcnow
from service.db.models import Evaluation, GateDecision, GatePolicy


def current() -> ColumnElement[bool]:
    """Decisions not superseded by a re-scoring of either evaluation (what readers and the
    gate go by; superseded ones are history, e.g. for the timeline)."""
    return GateDecision.superseded_at.is_(None)


def supersede(session: Session, evaluation_id: int) -> int:
    """Mark every current decision that judged ``evaluation_id`` (as candidate or baseline)
    superseded, now; returns how many."""
    result = session.execute(
        update(GateDecision)
        .where(
            or_(
                GateDecision.candidate_evaluation_id == evaluation_id,
                GateDecision.baseline_evaluation_id == evaluation_id,
            ),
            current(),
        )
        .values(superseded_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def latest_decisions(session: Session, evaluation_ids: Iterable[int]) -> dict[int, GateDecision]:
    """Candidate evaluation id → its newest decision (one query); ids without one are absent."""
    ids = set(evaluation_ids)
    if not ids:
        return {}
    newest = (
        select(func.max(GateDecision.id))
        .where(GateDecision.candidate_evaluation_id.in_(ids), current())
        .group_by(GateDecision.candidate_evaluation_id)
    )
    rows = session.scalars(select(GateDecision).where(GateDecision.id.in_(newest)))
    return {row.candidate_evaluation_id: row for row in rows}


def latest_decision(session: Session, evaluation_id: int) -> GateDecision | None:
    """The newest decision taken on this evaluation as the candidate, if any."""
    return latest_decisions(session, [evaluation_id]).get(evaluation_id)


def find_decision(
    session: Session, candidate_evaluation_id: int, baseline_evaluation_id: int, policy_id: int
) -> GateDecision | None:
    """The decision of this pair of evaluations under this policy version, if stored."""
    return session.scalars(
        select(GateDecision).where(
            GateDecision.candidate_evaluation_id == candidate_evaluation_id,
            GateDecision.baseline_evaluation_id == baseline_evaluation_id,
            GateDecision.policy_id == policy_id,
            current(),
        )
    ).first()


def policies_by_id(session: Session, policy_ids: Iterable[int]) -> dict[int, GatePolicy]:
    """Policy versions by id (one query)."""
    ids = set(policy_ids)
    if not ids:
        return {}
    return {
        row.id: row for row in session.scalars(select(GatePolicy).where(GatePolicy.id.in_(ids)))
    }


def latest_decision_against(
    session: Session, candidate_id: int, against_id: int
) -> GateDecision | None:
    """The newest decision of a candidate's evaluation against an evaluation of
    candidate ``against_id``; None when there is none."""
    cand_ev, base_ev = aliased(Evaluation), aliased(Evaluation)
    return session.scalars(
        select(GateDecision)
        .join(cand_ev, GateDecision.candidate_evaluation_id == cand_ev.id)
        .join(base_ev, GateDecision.baseline_evaluation_id == base_ev.id)
        .where(cand_ev.candidate_id == candidate_id, base_ev.candidate_id == against_id, current())
        .order_by(GateDecision.id.desc())
        .limit(1)
    ).first()
