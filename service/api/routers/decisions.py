"""Gate decisions and per-example diffs."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from service import decisions
from service.api.deps import IdPath, IdQuery, OffsetQuery, ReadToken, SessionDep, SubmitToken
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.decisions import (
    CohortSliceOut,
    DecisionOut,
    DiffPage,
    ExampleDiffOut,
    SliceSummaryOut,
)
from service.diffs import MAX_PAGE, DiffFilters, example_diffs
from service.slices import slice_summary

router = APIRouter(prefix="/v1/decisions", tags=["decisions"], route_class=UnitOfWorkRoute)


@router.get("", response_model=DecisionOut, summary="The gate decision of an evaluation")
def decision_of_evaluation(
    session: SessionDep, _: ReadToken, evaluation_id: IdQuery
) -> DecisionOut:
    decision = decisions.decision_for_evaluation(session, evaluation_id)
    return DecisionOut.model_validate(decisions.decision_payload(session, decision))


@router.post(
    "", response_model=DecisionOut, summary="Compute (or return) the decision of an evaluation"
)
def decide_evaluation(session: SessionDep, _: SubmitToken, evaluation_id: IdQuery) -> DecisionOut:
    decision = decisions.compute_decision(session, evaluation_id)
    return DecisionOut.model_validate(decisions.decision_payload(session, decision))


@router.get("/{decision_id}", response_model=DecisionOut, summary="One gate decision")
def get_decision(session: SessionDep, _: ReadToken, decision_id: IdPath) -> DecisionOut:
    decision = decisions.get_decision(session, decision_id)
    return DecisionOut.model_validate(decisions.decision_payload(session, decision))


@router.get("/{decision_id}/diff", response_model=DiffPage, summary="Examples that regressed most")
def diff(
    session: SessionDep,
    _: ReadToken,
    decision_id: IdPath,
    metric: str | None = None,
    domain: Literal["in", "out"] | None = None,
    cohort: str | None = None,
    offset: OffsetQuery = 0,
    limit: int = Query(50, ge=1, le=MAX_PAGE),
) -> DiffPage:
    decision = decisions.get_decision(session, decision_id)
    filters = DiffFilters(metric=metric, domain=domain, cohort=cohort)
    total, rows = example_diffs(session, decision, filters, offset=offset, limit=limit)
    return DiffPage(
        decision_id=decision_id,
        total=total,
        offset=offset,
        limit=limit,
        items=[ExampleDiffOut(**vars(r)) for r in rows],  # flat: no deep copy
    )


@router.get(
    "/{decision_id}/slices",
    response_model=SliceSummaryOut,
    summary="Per cohort: mean change with its interval and how many examples regressed",
)
def slices(
    session: SessionDep,
    _: ReadToken,
    decision_id: IdPath,
    metric: str | None = Query(None, description="default: the first comparative rule's metric"),
    domain: Literal["in", "out"] | None = None,
) -> SliceSummaryOut:
    decision = decisions.get_decision(session, decision_id)
    summary = slice_summary(session, decision, metric, domain)
    return SliceSummaryOut(
        decision_id=decision_id,
        metric=summary.metric,
        domain=summary.domain,
        confidence=summary.confidence,
        slices=[CohortSliceOut(**vars(s)) for s in summary.slices],
    )
