"""Evaluations, the read side: one evaluation, a filtered page of them, their per-example
results. The commands that change evaluations (create, cancel, retry) are in
:mod:`service.evaluation_commands`; their statuses and moves in :mod:`service.lifecycle`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from service.datasets import VersionRef, get_version, parse_version_ref
from service.db.models import (
    Candidate,
    Dataset,
    DatasetExample,
    DatasetVersion,
    Evaluation,
    ExampleResult,
    Score,
)
from service.errors import DatasetNotFound, EvaluationNotFound, InvalidRequest
from service.families import get_family
from service.lifecycle import parse_status

MAX_PAGE = 500


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
        query = query.where(Evaluation.status == parse_status(filters.status))
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
