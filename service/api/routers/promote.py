"""Promotion: move a family's alias to a candidate on a passing gate decision."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.api.deps import PromoteToken, SessionDep
from service.api.schemas.decisions import PromoteIn
from service.api.schemas.promotions import PromotionOut
from service.promotion import promote

router = APIRouter(prefix="/v1/families", tags=["promotions"])


@router.post(
    "/{name}/promote",
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
