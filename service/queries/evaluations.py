"""Evaluation rows looked up by what they belong to."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Evaluation
from service.lifecycle import SUCCEEDED


def latest_evaluations(session: Session, candidate_ids: Iterable[int]) -> dict[int, Evaluation]:
    """Candidate id → its newest evaluation (one query); candidates without one are absent."""
    ids = set(candidate_ids)
    if not ids:
        return {}
    newest = (
        select(func.max(Evaluation.id))
        .where(Evaluation.candidate_id.in_(ids))
        .group_by(Evaluation.candidate_id)
    )
    rows = session.scalars(select(Evaluation).where(Evaluation.id.in_(newest)))
    return {row.candidate_id: row for row in rows}


def evaluations_by_id(session: Session, evaluation_ids: Iterable[int]) -> dict[int, Evaluation]:
    """Evaluations by id (one query)."""
    ids = set(evaluation_ids)
    if not ids:
        return {}
    return {
        row.id: row for row in session.scalars(select(Evaluation).where(Evaluation.id.in_(ids)))
    }


def waiting_on(session: Session, baseline_evaluation_id: int) -> list[Evaluation]:
    """Succeeded candidate evaluations compared with this baseline evaluation."""
    return list(
        session.scalars(
            select(Evaluation).where(
                Evaluation.baseline_evaluation_id == baseline_evaluation_id,
                Evaluation.status == SUCCEEDED,
            )
        )
    )


def progress_state(session: Session, evaluation_id: int) -> tuple[str, int, int] | None:
    """(status, examples done, examples total) of one evaluation — a primary-key read for
    long-polls; ``None`` when it does not exist."""
    row = session.execute(
        select(Evaluation.status, Evaluation.progress_done, Evaluation.progress_total).where(
            Evaluation.id == evaluation_id
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1], row[2])
