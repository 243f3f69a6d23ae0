"""Evaluations: creating one with its shared baseline, reading, listing, cancelling.

An evaluation is one candidate × one dataset version × one generation config.
Every candidate evaluation is compared with a *baseline* evaluation: the
family's baseline candidate (production alias, else the base model) on the same
dataset version and config. The baseline is evaluated once and reused by every
candidate that compares with it; only a failed or cancelled one is replaced.
Functions here only ``flush()``; the caller commits and then hands the returned
newly queued ids to the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Select, func, select, update
from sqlalchemy.orm import Session, selectinload

from service.datasets import VersionRef, get_version, parse_version_ref
from service.db.base import utcnow
from service.db.models import (
    CANCELLED,
    EVALUATION_STATUSES,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATUSES,
    Candidate,
    Dataset,
    DatasetExample,
    DatasetVersion,
    Evaluation,
    ExampleResult,
    Family,
    Score,
)
from service.errors import Conflict, DatasetNotFound, EvaluationNotFound, InvalidRequest
from service.families import baseline_candidate, get_family
from service.settings import Settings

#: A baseline evaluation in one of these states is reused; failed/cancelled ones are not.
REUSABLE_STATUSES = (SUCCEEDED, RUNNING, QUEUED)
#: Added to the dataset version's generation config unless it sets them itself.
DEFAULT_CONFIG: dict[str, Any] = {"dtype": "auto", "seed": 0}
MAX_PAGE = 500


class EvaluationAlreadyFinished(Conflict):
    """A cancel (or other change) asked of an evaluation that already reached a final state."""


def parse_dataset_ref(ref: str) -> tuple[str, VersionRef]:
    """``"name"`` / ``"name@latest"`` → (name, "latest"); ``"name@3"`` → (name, 3)."""
    name, sep, version = ref.strip().partition("@")
    if not name:
        raise InvalidRequest(f"dataset reference {ref!r} has no name (use name or name@version)")
    return name, parse_version_ref(version) if sep else "latest"


def resolve_dataset(session: Session, ref: str) -> DatasetVersion:
    """The version ``name[@version]`` names.

    Raises ``DatasetNotFound``, ``DatasetVersionNotFound``, ``InvalidRequest``.
    """
    name, version = parse_dataset_ref(ref)
    return get_version(session, name, version)


def evaluation_config(version: DatasetVersion) -> dict[str, Any]:
    """The dataset version's generation config with the defaults it does not set."""
    return {**DEFAULT_CONFIG, **(version.generation or {})}


def _reusable_baseline(
    session: Session, candidate_id: int, version_id: int, config: dict[str, Any]
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
    session: Session, candidate: Candidate, version: DatasetVersion, config: dict[str, Any]
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


def get_evaluation(session: Session, evaluation_id: int) -> Evaluation:
    """The evaluation with this id; raises ``EvaluationNotFound``."""
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise EvaluationNotFound(f"evaluation {evaluation_id} does not exist")
    return evaluation


@dataclass(frozen=True)
class EvaluationFilters:
    """Filters for :func:`list_evaluations`; ``None`` means "any"."""

    family: str | None = None
    sweep: str | None = None
    status: str | None = None
    dataset: str | None = None  # "name" (every version) or "name@version"
    candidate_id: int | None = None
    offset: int = 0
    limit: int = 50


def _filtered(session: Session, filters: EvaluationFilters) -> Select[Evaluation]:
    query = select(Evaluation)
    if filters.family is not None or filters.sweep is not None:
        query = query.join(Candidate, Candidate.id == Evaluation.candidate_id)
    if filters.family is not None:
        query = query.where(Candidate.family_id == get_family(session, filters.family).id)
    if filters.sweep is not None:
        query = query.where(Candidate.sweep == filters.sweep)
    if filters.status is not None:
        if filters.status not in EVALUATION_STATUSES:
            raise InvalidRequest(
                f"unknown status {filters.status!r}; statuses are {', '.join(EVALUATION_STATUSES)}"
            )
        query = query.where(Evaluation.status == filters.status)
    if filters.dataset is not None:
        if "@" in filters.dataset:
            version = resolve_dataset(session, filters.dataset)
            query = query.where(Evaluation.dataset_version_id == version.id)
        else:
            dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == filters.dataset))
            if dataset_id is None:
                raise DatasetNotFound(f"dataset {filters.dataset!r} does not exist")
            versions = select(DatasetVersion.id).where(DatasetVersion.dataset_id == dataset_id)
            query = query.where(Evaluation.dataset_version_id.in_(versions))
    if filters.candidate_id is not None:
        query = query.where(Evaluation.candidate_id == filters.candidate_id)
    return query


def list_evaluations(session: Session, filters: EvaluationFilters) -> tuple[list[Evaluation], int]:
    """Evaluations matching every filter, newest first, and how many match in all.

    Candidates (with their family) and dataset versions (with their dataset) are
    loaded alongside. Raises ``InvalidRequest`` for a bad status or page, and the
    not-found errors for an unknown family or dataset.
    """
    if not 1 <= filters.limit <= MAX_PAGE or filters.offset < 0:
        raise InvalidRequest(f"limit must be within 1..{MAX_PAGE} and offset ≥ 0")
    query = _filtered(session, filters)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(
            selectinload(Evaluation.candidate).selectinload(Candidate.family),
            selectinload(Evaluation.dataset_version).selectinload(DatasetVersion.dataset),
        )
        .order_by(Evaluation.id.desc())
        .offset(filters.offset)
        .limit(filters.limit)
    ).all()
    return list(rows), total


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
                .where(Evaluation.id == evaluation_id, Evaluation.status == QUEUED)
                .values(status=CANCELLED, finished_at=utcnow(), cancel_requested=True)
            ),
        )
        if stopped.rowcount == 0:
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
        if evaluation.status in TERMINAL_STATUSES:
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
    moved = cast(
        CursorResult[Any],
        session.execute(
            update(Evaluation)
            .where(Evaluation.id == evaluation_id, Evaluation.status.in_([FAILED, CANCELLED]))
            .values(
                status=QUEUED,
                error=None,
                cancel_requested=False,
                finished_at=None,
                lease_owner=None,
                lease_expires_at=None,
            )
        ),
    )
    session.refresh(evaluation)
    if moved.rowcount == 0:
        raise EvaluationAlreadyFinished(
            f"evaluation {evaluation_id} is {evaluation.status}; only failed or cancelled "
            "evaluations can be retried"
        )
    return evaluation


@dataclass(frozen=True)
class ResultRow:
    """One example of an evaluation: the example, the output, and its scores."""

    example_key: str
    position: int
    input: str
    context: str | None
    reference: str | None
    domain: str
    cohort: str | None
    output: str
    n_prompt_tokens: int
    n_new_tokens: int
    scores: dict[str, float]
    evaluators: dict[str, dict[str, str]]  # metric → {"name", "version"}


def evaluation_results(
    session: Session,
    evaluation_id: int,
    *,
    offset: int = 0,
    limit: int = 100,
    metric: str | None = None,
    domain: str | None = None,
    cohort: str | None = None,
) -> tuple[list[ResultRow], int]:
    """Per-example rows in dataset order, and how many match in all.

    ``domain`` / ``cohort`` filter on the example; ``metric`` keeps only the
    examples scored on that metric and only that metric's score. Raises
    ``EvaluationNotFound`` and ``InvalidRequest`` (bad domain or page).
    """
    evaluation = get_evaluation(session, evaluation_id)
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequest(f"limit must be within 1..{MAX_PAGE} and offset ≥ 0")
    if domain is not None and domain not in ("in", "out"):
        raise InvalidRequest(f"domain must be 'in' or 'out', not {domain!r}")
    query = (
        select(ExampleResult, DatasetExample)
        .join(
            DatasetExample,
            (DatasetExample.dataset_version_id == evaluation.dataset_version_id)
            & (DatasetExample.example_key == ExampleResult.example_key),
        )
        .where(ExampleResult.evaluation_id == evaluation_id)
    )
    if domain is not None:
        query = query.where(DatasetExample.domain == domain)
    if cohort is not None:
        query = query.where(DatasetExample.cohort == cohort)
    if metric is not None:
        scored = select(Score.id).where(
            Score.evaluation_id == evaluation_id,
            Score.example_key == ExampleResult.example_key,
            Score.metric == metric,
        )
        query = query.where(scored.exists())
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = session.execute(query.order_by(DatasetExample.position).offset(offset).limit(limit))
    pairs = [(result, example) for result, example in page]
    score_query = select(Score).where(
        Score.evaluation_id == evaluation_id,
        Score.example_key.in_([result.example_key for result, _ in pairs]),
    )
    if metric is not None:
        score_query = score_query.where(Score.metric == metric)
    by_key: dict[str, list[Score]] = {}
    for score in session.scalars(score_query.order_by(Score.metric)):
        by_key.setdefault(score.example_key, []).append(score)
    rows = [
        ResultRow(
            example_key=result.example_key,
            position=example.position,
            input=example.input,
            context=example.context,
            reference=example.reference,
            domain=example.domain,
            cohort=example.cohort,
            output=result.output,
            n_prompt_tokens=result.n_prompt_tokens,
            n_new_tokens=result.n_new_tokens,
            scores={s.metric: s.value for s in by_key.get(result.example_key, [])},
            evaluators={
                s.metric: {"name": s.evaluator, "version": s.evaluator_version}
                for s in by_key.get(result.example_key, [])
            },
        )
        for result, example in pairs
    ]
    return rows, total
