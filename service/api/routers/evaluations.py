"""Routes for evaluations: create (with the shared baseline), read, list, results, cancel."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request
from sqlalchemy.orm import Session

from service import evaluation_commands, evaluations, rescoring
from service.api import long_poll
from service.api.deps import (
    IdPath,
    OffsetQuery,
    OptionalIdQuery,
    ReadToken,
    SessionDep,
    SettingsDep,
    SubmitToken,
)
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.evaluations import (
    EvaluationCreate,
    EvaluationDetail,
    EvaluationPage,
    EvaluationRescore,
    EvaluationsRescore,
    EvaluationSummary,
    ResultOut,
    ResultPage,
)
from service.candidates import get_candidate
from service.evaluations import EvaluationFilters
from service.lifecycle import EvaluationStatus
from service.queries.decisions import latest_decision, latest_decisions
from service.queries.results import aggregates_of
from service.worker.dispatch import Dispatcher

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"], route_class=UnitOfWorkRoute)
log = logging.getLogger("tunegate.api")

Limit = Annotated[int, Query(ge=1, le=evaluations.MAX_PAGE)]


def _enqueue(dispatcher: Dispatcher, evaluation_id: int) -> None:
    try:
        dispatcher.enqueue(evaluation_id)
    except Exception:  # the row stays queued; the worker's poll (or redelivery) picks it up
        log.exception("could not enqueue evaluation %s; it stays queued", evaluation_id)


def enqueue_after_commit(request: Request, background: BackgroundTasks, ids: Sequence[int]) -> None:
    """Hand ``ids`` to the dispatcher after the response is sent.

    The route class commits the request's unit of work when the route returns,
    before the response: a worker is never handed an id whose row it cannot see
    yet, and a 201 means "stored".
    """
    dispatcher: Dispatcher = request.app.state.dispatcher
    for evaluation_id in ids:
        background.add_task(_enqueue, dispatcher, evaluation_id)


def _detail(session: Session, evaluation_id: int) -> EvaluationDetail:
    row = evaluations.get_evaluation(session, evaluation_id)
    return EvaluationDetail.of_detail(
        row,
        aggregates_of(session, evaluation_id),
        decision.id if (decision := latest_decision(session, evaluation_id)) else None,
    )


@router.post("", status_code=201, summary="Queue a candidate's evaluation on a dataset")
def create_evaluation(
    body: EvaluationCreate,
    session: SessionDep,
    settings: SettingsDep,
    _: SubmitToken,
    request: Request,
    background: BackgroundTasks,
) -> EvaluationDetail:
    candidate = get_candidate(session, body.candidate_id)
    evaluation, queued = evaluation_commands.create_evaluation(
        session, settings, candidate, body.dataset
    )
    enqueue_after_commit(request, background, queued)
    return _detail(session, evaluation.id)


@router.get("", summary="List evaluations, newest first")
def list_evaluations(
    session: SessionDep,
    _: ReadToken,
    family: str | None = None,
    sweep: str | None = None,
    status: EvaluationStatus | None = None,
    dataset: str | None = None,
    candidate_id: OptionalIdQuery = None,
    offset: OffsetQuery = 0,
    limit: Limit = 50,
) -> EvaluationPage:
    filters = EvaluationFilters(family, sweep, status, dataset, candidate_id, offset, limit)
    rows, total = evaluations.list_evaluations(session, filters)
    decided = latest_decisions(session, [r.id for r in rows])  # one query for the page
    items = [EvaluationSummary.of(r, d.id if (d := decided.get(r.id)) else None) for r in rows]
    return EvaluationPage(items=items, total=total, offset=offset, limit=limit)


WaitSeconds = Annotated[
    float,
    Query(
        ge=0,
        le=long_poll.MAX_WAIT_SECONDS,
        description="Long-poll: answer when the status or progress changes, the evaluation "
        "has ended, or this many seconds passed (0: at once). A busy server may answer at once.",
    ),
]


@router.get("/{evaluation_id}", summary="One evaluation with progress and aggregates")
def get_evaluation(
    evaluation_id: IdPath,
    session: SessionDep,
    _: ReadToken,
    request: Request,
    wait_seconds: WaitSeconds = 0,
) -> EvaluationDetail:
    stopping = getattr(request.app.state, "stopping", None)
    long_poll.wait_for_change(session, evaluation_id, wait_seconds, stopping=stopping)
    return _detail(session, evaluation_id)


@router.get("/{evaluation_id}/results", summary="Per-example outputs and scores")
def evaluation_results(
    evaluation_id: IdPath,
    session: SessionDep,
    _: ReadToken,
    metric: str | None = None,
    domain: str | None = None,
    cohort: str | None = None,
    offset: OffsetQuery = 0,
    limit: Limit = 100,
) -> ResultPage:
    rows, total = evaluations.evaluation_results(
        session,
        evaluation_id,
        offset=offset,
        limit=limit,
        metric=metric,
        domain=domain,
        cohort=cohort,
    )
    return ResultPage(
        items=[ResultOut.of(r) for r in rows], total=total, offset=offset, limit=limit
    )


@router.post(
    "/{evaluation_id}/retry", summary="Queue a failed or cancelled evaluation again (resumes)"
)
def retry_evaluation(
    evaluation_id: IdPath,
    session: SessionDep,
    request: Request,
    background: BackgroundTasks,
    _: SubmitToken,
) -> EvaluationDetail:
    evaluation_commands.retry_evaluation(session, evaluation_id)
    enqueue_after_commit(request, background, [evaluation_id])
    return _detail(session, evaluation_id)


@router.post(
    "/rescore",
    summary="Score several evaluations' stored outputs again, all or none (no forward pass)",
)
def rescore_evaluations(
    body: EvaluationsRescore,
    session: SessionDep,
    request: Request,
    background: BackgroundTasks,
    _: SubmitToken,
) -> list[EvaluationDetail]:
    queued = rescoring.rescore_evaluations(session, body.evaluation_ids, body.evaluators)
    enqueue_after_commit(request, background, [e.id for e in queued])
    return [_detail(session, e.id) for e in queued]


@router.post(
    "/{evaluation_id}/rescore",
    summary="Score the stored outputs again (new or changed evaluators; no forward pass)",
)
def rescore_evaluation(
    evaluation_id: IdPath,
    session: SessionDep,
    request: Request,
    background: BackgroundTasks,
    _: SubmitToken,
    body: EvaluationRescore | None = None,
) -> EvaluationDetail:
    rescoring.rescore_evaluation(session, evaluation_id, body.evaluators if body else None)
    enqueue_after_commit(request, background, [evaluation_id])
    return _detail(session, evaluation_id)


@router.post("/{evaluation_id}/cancel", summary="Cancel a queued or running evaluation")
def cancel_evaluation(
    evaluation_id: IdPath, session: SessionDep, _: SubmitToken
) -> EvaluationDetail:
    evaluation_commands.cancel_evaluation(session, evaluation_id)
    return _detail(session, evaluation_id)
