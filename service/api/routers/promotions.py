"""Routes for promotions: the audit history of alias moves (read side)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service import aliases
from service.api.deps import ReadToken, SessionDep
from service.api.schemas.promotions import PromotionOut, PromotionPage
from service.families import get_family

router = APIRouter(prefix="/v1/promotions", tags=["promotions"])


@router.get("", summary="Promotion history, newest first")
def list_promotions(
    session: SessionDep,
    _: ReadToken,
    family: str | None = None,
    alias: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=aliases.MAX_PAGE)] = 100,
) -> PromotionPage:
    family_id = get_family(session, family).id if family is not None else None
    rows = aliases.list_promotions(session, family_id, alias=alias, offset=offset, limit=limit)
    names = aliases.family_names(session, rows)
    return PromotionPage(
        items=[PromotionOut.of(r, names[r.family_id]) for r in rows], offset=offset, limit=limit
    )
