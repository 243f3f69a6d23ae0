"""A family's decision timeline: every gate decision on its candidates, newest first.

Weekly retrains at a glance: when each candidate was judged, under which policy
version, with which verdict. One indexed query (decisions → evaluations → candidates
of the family), paged by the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Candidate, Evaluation, GateDecision, GatePolicy
from service.errors import InvalidRequest
from service.families import get_family

MAX_PAGE = 500


@dataclass(frozen=True)
class TimelineEntry:
    decision_id: int
    created_at: datetime
    verdict: str
    summary: str
    policy_version: int
    candidate_id: int
    candidate_name: str | None
    learning_rate: float | None
    sweep: str | None
    evaluation_id: int


def decision_timeline(
    session: Session, family_name: str, *, offset: int = 0, limit: int = 100
) -> tuple[int, list[TimelineEntry]]:
    """The family's gate decisions, newest first; returns (total, page).

    Raises ``FamilyNotFound`` and ``InvalidRequest`` (bad page).
    """
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequest(f"limit must be within 1..{MAX_PAGE} and offset ≥ 0")
    family = get_family(session, family_name)
    query = (
        select(
            GateDecision.id,
            GateDecision.created_at,
            GateDecision.verdict,
            GateDecision.summary,
            GatePolicy.version,
            Candidate.id,
            Candidate.name,
            Candidate.learning_rate,
            Candidate.sweep,
            Evaluation.id,
        )
        .join(Evaluation, Evaluation.id == GateDecision.candidate_evaluation_id)
        .join(Candidate, Candidate.id == Evaluation.candidate_id)
        .join(GatePolicy, GatePolicy.id == GateDecision.policy_id)
        .where(Candidate.family_id == family.id)
    )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(GateDecision.id.desc()).offset(offset).limit(limit))
    return total, [
        TimelineEntry(
            decision_id=r[0],
            created_at=r[1],
            verdict=r[2],
            summary=r[3],
            policy_version=r[4],
            candidate_id=r[5],
            candidate_name=r[6],
            learning_rate=r[7],
            sweep=r[8],
            evaluation_id=r[9],
        )
        for r in rows
    ]
