"""Promotions: move a family's alias on a passing gate decision, and the audit history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from service import aliases
from service.api.deps import OffsetQuery, PromoteToken, ReadToken, SessionDep
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.decisions import PromoteIn
from service.api.schemas.promotions import PromotionOut, PromotionPage
from service.families import get_family
from service.promotion import promote

router = APIRouter(tags=["promotions"], route_class=UnitOfWorkRoute)


@router.post(
    "/v1/families/{name}/promote",
    response_model=PromotionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Move an alias (default production) to a candidate",
)
def promote_candidate(
    session: SessionDep, principal: PromoteToken, name: str, body: PromoteIn
) -> PromotionOut:
    record = promote(
        session,
        family_name=name,
        candidate_id=body.candidate_id,
        principal=principal,
        alias=body.alias,
        reason=body.reason,
        override=body.override,
    )
    return PromotionOut.of(record, name)


@router.get("/v1/promotions", summary="Promotion history, newest first")
def list_promotions(
    session: SessionDep,
    _: ReadToken,
    family: str | None = None,
    alias: str | None = None,
    offset: OffsetQuery = 0,
    limit: Annotated[int, Query(ge=1, le=aliases.MAX_PAGE)] = 100,
) -> PromotionPage:
    family_id = get_family(session, family).id if family is not None else None
    rows = aliases.list_promotions(session, family_id, alias=alias, offset=offset, limit=limit)
    names = aliases.family_names(session, rows)
    return PromotionPage(
        items=[PromotionOut.of(r, names[r.family_id]) for r in rows],
        total=aliases.count_promotions(session, family_id, alias=alias),
        offset=offset,
        limit=limit,
    )
