"""What an evaluation stored: per-example outputs, scores, and aggregates."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Aggregate, ExampleResult, Score

#: evaluation id → example key → metric → value
ScoresByEvaluation = dict[int, dict[str, dict[str, float]]]


def done_keys(session: Session, evaluation_id: int) -> set[str]:
    """The example keys an evaluation has stored an output for."""
    return set(
        session.scalars(
            select(ExampleResult.example_key).where(ExampleResult.evaluation_id == evaluation_id)
        )
    )


def scores_by_evaluation(
    session: Session, evaluation_ids: Iterable[int], *, metric: str | None = None
) -> ScoresByEvaluation:
    """Per-example scores of several evaluations (one query); ``metric`` keeps only that one."""
    ids = set(evaluation_ids)
    out: ScoresByEvaluation = {evaluation_id: {} for evaluation_id in ids}
    if not ids:
        return out
    query = select(Score.evaluation_id, Score.example_key, Score.metric, Score.value).where(
        Score.evaluation_id.in_(ids)
    )
    if metric is not None:
        query = query.where(Score.metric == metric)
    for evaluation_id, key, name, value in session.execute(query):
        out[evaluation_id].setdefault(key, {})[name] = value
    return out


def scores_by_example(session: Session, evaluation_id: int) -> dict[str, dict[str, float]]:
    """One evaluation's scores: example key → metric → value."""
    return scores_by_evaluation(session, [evaluation_id])[evaluation_id]


def outputs_by_evaluation(
    session: Session, evaluation_ids: Iterable[int], keys: Iterable[str] | None = None
) -> dict[int, dict[str, str]]:
    """Generated outputs of several evaluations (of only ``keys`` when given):
    evaluation id → example key → text."""
    ids = set(evaluation_ids)
    out: dict[int, dict[str, str]] = {evaluation_id: {} for evaluation_id in ids}
    query = select(
        ExampleResult.evaluation_id, ExampleResult.example_key, ExampleResult.output
    ).where(ExampleResult.evaluation_id.in_(ids))
    if keys is not None:
        wanted = sorted(set(keys))
        if not wanted:
            return out
        query = query.where(ExampleResult.example_key.in_(wanted))
    if ids:
        for evaluation_id, key, text in session.execute(query):
            out[evaluation_id][key] = text
    return out


def model_metrics(session: Session, evaluation_ids: Iterable[int]) -> dict[int, dict[str, float]]:
    """Whole-model metrics (perplexity) of several evaluations: id → metric → value."""
    ids = set(evaluation_ids)
    out: dict[int, dict[str, float]] = {evaluation_id: {} for evaluation_id in ids}
    if ids:
        for evaluation_id, metric, mean in session.execute(
            select(Aggregate.evaluation_id, Aggregate.metric, Aggregate.mean).where(
                Aggregate.evaluation_id.in_(ids), Aggregate.scope == "model"
            )
        ):
            out[evaluation_id][metric] = mean
    return out


def aggregates_of(session: Session, evaluation_id: int) -> list[Aggregate]:
    """The evaluation's aggregates (empty until it finished), by metric and scope."""
    return list(
        session.scalars(
            select(Aggregate)
            .where(Aggregate.evaluation_id == evaluation_id)
            .order_by(Aggregate.metric, Aggregate.scope, Aggregate.scope_value)
        )
    )
