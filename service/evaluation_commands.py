"""Evaluations, the commands: create one (with its shared baseline), cancel, retry.

An evaluation is one candidate × one dataset version × one generation config.
Every candidate evaluation is compared with a *baseline* evaluation: the
family's baseline candidate (production alias, else the base model) on the same
dataset version and config. The baseline is evaluated once and reused by every
candidate that compares with it; only a failed or cancelled one is replaced.
Status changes are the lifecycle's moves (:mod:`service.lifecycle`), each one
conditional UPDATE. Functions here only ``flush()``; the caller commits and then
hands the returned newly queued ids to the dispatcher.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Candidate, DatasetVersion, Evaluation, Family
from service.evaluations import get_evaluation, resolve_dataset
from service.families import baseline_candidate
from service.jsontypes import JSONObject
from service.lifecycle import (
    CANCELLED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    EvaluationAlreadyFinished,
    Move,
    sources,
)
from service.settings import Settings

#: A baseline evaluation in one of these states is reused; failed/cancelled ones are not.
REUSABLE_STATUSES = (SUCCEEDED, RUNNING, QUEUED)
#: Added to the dataset version's generation config unless it sets them itself.
DEFAULT_CONFIG: JSONObject = {"dtype": "auto", "seed": 0}


def evaluation_config(version: DatasetVersion) -> JSONObject:
    """The dataset version's generation config with the defaults it does not set."""
    return {**DEFAULT_CONFIG, **(version.generation or {})}


def _reusable_baseline(
    session: Session, candidate_id: int, version_id: int, config: JSONObject
) -> Evaluation | None:
    rows = session.scalars(
        select(Evaluation)
        .where(
            Evaluation.candidate_id == candidate_id,
            Evaluation.dataset_version_id == version_id,
            Evaluation.status.in_(REUSABLE_STATUSES),
        )
        .order_by(Evaluation.id.desc())
    ).all()
    matching = [e for e in rows if e.config == config]
    finished = [e for e in matching if e.status == SUCCEEDED]
    if finished:
        return finished[0]
    return matching[0] if matching else None


def _new_evaluation(
    session: Session, candidate: Candidate, version: DatasetVersion, config: JSONObject
) -> Evaluation:
    evaluation = Evaluation(
        candidate_id=candidate.id,
        dataset_version_id=version.id,
        status=QUEUED,
        config=dict(config),
        progress_total=version.n_examples,
        provenance={"dataset_digest": version.digest, "base_model": candidate.base_model},
    )
    session.add(evaluation)
    session.flush()
    return evaluation


def create_evaluation(
    session: Session, settings: Settings, candidate: Candidate, dataset_ref: str
) -> tuple[Evaluation, list[int]]:
    """Queue ``candidate``'s evaluation on a dataset version, ensuring its baseline.

    Returns the new evaluation and the ids newly queued (the baseline's first when
    it had to be created), to enqueue after commit. A base candidate, or the
    family's baseline candidate itself, gets ``baseline_evaluation_id = None``.
    ``settings`` is accepted for device-dependent defaults; none apply yet.
    Raises ``DatasetNotFound``, ``DatasetVersionNotFound``, ``InvalidRequest``.
    """
    del settings
    version = resolve_dataset(session, dataset_ref)
    config = evaluation_config(version)
    # Serialise baseline creation per family (PostgreSQL; SQLite serialises writers anyway).
    family = session.scalars(
        select(Family).where(Family.id == candidate.family_id).with_for_update()
    ).one()
    queued: list[int] = []
    baseline_id: int | None = None
    baseline = baseline_candidate(session, family)
    if candidate.kind != "base" and candidate.id != baseline.id:
        reference = _reusable_baseline(session, baseline.id, version.id, config)
        if reference is None:
            reference = _new_evaluation(session, baseline, version, config)
            queued.append(reference.id)
        baseline_id = reference.id
    evaluation = _new_evaluation(session, candidate, version, config)
    evaluation.baseline_evaluation_id = baseline_id
    session.flush()
    queued.append(evaluation.id)
    return evaluation, queued


def cancel_evaluation(session: Session, evaluation_id: int) -> Evaluation:
    """Cancel: a queued evaluation becomes ``cancelled`` at once; a running one gets
    ``cancel_requested`` and its worker stops at the next chunk.

    Both moves are conditional updates, so a worker claiming the row at the same
    moment cannot be overwritten. Raises ``EvaluationNotFound``, and
    ``EvaluationAlreadyFinished`` (409) for a terminal evaluation.
    """
    evaluation = get_evaluation(session, evaluation_id)
    for _ in range(3):  # queued → running → (requeued by an expired lease) at most
        stopped = cast(
            CursorResult[Any],
            session.execute(
                update(Evaluation)
                .where(Evaluation.id == evaluation_id, Evaluation.status.in_(sources(Move.CANCEL)))
                .values(status=CANCELLED, finished_at=utcnow(), cancel_requested=True)
            ),
        )
        if stopped.rowcount == 0:  # a running one: its worker finishes it as cancelled
            session.execute(
                update(Evaluation)
                .where(Evaluation.id == evaluation_id, Evaluation.status == RUNNING)
                .values(cancel_requested=True)
            )
        session.refresh(evaluation)
        if evaluation.status == CANCELLED and stopped.rowcount:
            return evaluation
        if evaluation.status == RUNNING and evaluation.cancel_requested:
            return evaluation
        if evaluation.status in TERMINAL:
            raise EvaluationAlreadyFinished(
                f"evaluation {evaluation_id} is already {evaluation.status}; nothing to cancel"
            )
    return evaluation


def retry_evaluation(session: Session, evaluation_id: int) -> Evaluation:
    """Queue a failed or cancelled evaluation again; it resumes from its stored rows.

    The rows already written stay (they are keyed by example), so the next run only
    generates what is missing. A conditional update, like cancel. Raises
    ``EvaluationNotFound``, and ``EvaluationAlreadyFinished`` (409) unless the
    evaluation is failed or cancelled.
    """
    evaluation = get_evaluation(session, evaluation_id)
    moved = requeue(session, evaluation_id, Move.RETRY)
    session.refresh(evaluation)
    if not moved:
        raise EvaluationAlreadyFinished(
            f"evaluation {evaluation_id} is {evaluation.status}; only failed or cancelled "
            "evaluations can be retried"
        )
    return evaluation


def requeue(session: Session, evaluation_id: int, move: Move, **values: object) -> bool:
    """Queue the evaluation again if its status is a source of ``move`` (retry, rescore):
    one conditional UPDATE that clears the error, the cancel flag and the lease, and sets
    ``values`` besides. Returns whether it moved; the caller raises its own 409."""
    moved = cast(
        CursorResult[Any],
        session.execute(
            update(Evaluation)
            .where(Evaluation.id == evaluation_id, Evaluation.status.in_(sources(move)))
            .values(
                status=QUEUED,
                error=None,
                cancel_requested=False,
                finished_at=None,
                lease_owner=None,
                lease_expires_at=None,
                **values,
            )
        ),
    )
    return moved.rowcount > 0
