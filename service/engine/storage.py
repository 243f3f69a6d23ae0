"""What the evaluation job reads and writes. Functions only ``flush()``; the job commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from evaluators.base import Example
from service import webhooks
from service.db.base import utcnow
from service.db.models import (
    Aggregate,
    Candidate,
    DatasetVersion,
    Evaluation,
    ExampleResult,
    Score,
)
from service.engine.aggregates import AggregateRow
from service.engine.scoring import ScoreValue
from service.errors import EvaluationNotFound
from service.lifecycle import FAILED, RUNNING, EvaluationStatus, Move, check, sources
from service.queries.examples import examples_of, heldout_of
from service.queries.results import done_keys


@dataclass(frozen=True)
class JobSpec:
    """Everything the job needs, read once; the job never holds ORM rows across chunks."""

    evaluation_id: int
    config: dict[str, Any]  # the evaluation's stored config, read by the job key by key
    candidate_id: int
    candidate_kind: str  # base | lora | full
    checkpoint_path: str | None
    base_model: str
    candidate_digests: dict[str, str]
    dataset_digest: str
    examples: list[Example] = field(default_factory=list)
    heldout: list[str] = field(default_factory=list)


def load_job(session: Session, evaluation_id: int) -> JobSpec:
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise EvaluationNotFound(f"evaluation {evaluation_id} does not exist")
    candidate = session.get_one(Candidate, evaluation.candidate_id)
    version = session.get_one(DatasetVersion, evaluation.dataset_version_id)
    return JobSpec(
        evaluation_id=evaluation.id,
        config=dict(evaluation.config or {}),
        candidate_id=candidate.id,
        candidate_kind=candidate.kind,
        checkpoint_path=candidate.checkpoint_path,
        base_model=candidate.base_model,
        candidate_digests=dict(candidate.digests or {}),
        dataset_digest=version.digest,
        examples=examples_of(session, version.id),
        heldout=heldout_of(session, version.id),
    )


@dataclass(frozen=True)
class ChunkRow:
    key: str
    output: str
    n_prompt_tokens: int
    n_new_tokens: int
    scores: dict[str, ScoreValue]


def write_chunk(session: Session, evaluation_id: int, rows: Sequence[ChunkRow]) -> int:
    """Store a chunk's outputs and scores and bump progress; returns examples done so far.

    Rows already present (a rerun that overlaps what a dead worker wrote) are
    skipped, so the (evaluation, example) key never holds two rows.
    """
    present = done_keys(session, evaluation_id)
    for row in rows:
        if row.key in present:
            continue
        session.add(
            ExampleResult(
                evaluation_id=evaluation_id,
                example_key=row.key,
                output=row.output,
                n_prompt_tokens=row.n_prompt_tokens,
                n_new_tokens=row.n_new_tokens,
            )
        )
        for metric, score in row.scores.items():
            session.add(
                Score(
                    evaluation_id=evaluation_id,
                    example_key=row.key,
                    metric=metric,
                    value=score.value,
                    evaluator=score.evaluator,
                    evaluator_version=score.version,
                    evaluator_options=score.options,
                )
            )
    session.flush()
    done = session.scalar(select(func.count()).where(ExampleResult.evaluation_id == evaluation_id))
    evaluation = session.get_one(Evaluation, evaluation_id)
    evaluation.progress_done = int(done or 0)
    return evaluation.progress_done


def write_aggregates(session: Session, evaluation_id: int, rows: Sequence[AggregateRow]) -> None:
    session.execute(delete(Aggregate).where(Aggregate.evaluation_id == evaluation_id))
    for row in rows:
        session.add(
            Aggregate(
                evaluation_id=evaluation_id,
                metric=row.metric,
                scope=row.scope,
                scope_value=row.scope_value,
                n=row.n,
                mean=row.mean,
                ci_low=row.ci_low,
                ci_high=row.ci_high,
            )
        )
    session.flush()


def finish(
    session: Session,
    evaluation_id: int,
    worker_id: str,
    status: EvaluationStatus,
    error: str | None,
) -> bool:
    """The lifecycle's *finish*: set the terminal status if this worker still holds the
    lease (one conditional UPDATE); False otherwise. ``IllegalTransition`` for a status
    that is not terminal."""
    check(Move.FINISH, RUNNING, status)
    result = session.execute(
        update(Evaluation)
        .where(
            Evaluation.id == evaluation_id,
            Evaluation.lease_owner == worker_id,
            Evaluation.status.in_(sources(Move.FINISH)),
        )
        .values(
            status=status,
            error=error,
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    finished = bool(result.rowcount == 1)  # type: ignore[attr-defined]
    if finished and status == FAILED:
        _emit_failed(session, evaluation_id, error)
    return finished


def _emit_failed(session: Session, evaluation_id: int, error: str | None) -> None:
    """The ``evaluation.failed`` webhook event (queued in this unit of work)."""
    evaluation = session.get_one(Evaluation, evaluation_id)
    candidate = session.get_one(Candidate, evaluation.candidate_id)
    data = {
        "evaluation_id": evaluation_id,
        "candidate_id": candidate.id,
        "candidate_name": candidate.name,
        "learning_rate": candidate.learning_rate,
        "sweep": candidate.sweep,
        "baseline": evaluation.baseline_evaluation_id is None,
        "error": error,
    }
    webhooks.emit(session, candidate.family_id, webhooks.EVALUATION_FAILED, data)
