"""Response bodies for ``/v1/promotions``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from pydantic import BaseModel

from service.api.schemas.common import Page, UtcDateTime

if TYPE_CHECKING:  # the CLI parses these models: no database code at import
    from service.db.models import Promotion


class PromotionOut(BaseModel):
    """One audited alias move."""

    id: int
    family: str
    alias: str
    from_candidate_id: int | None
    to_candidate_id: int
    decision_id: int | None
    actor: str
    override: bool
    reason: str | None
    created_at: UtcDateTime

    @classmethod
    def of(cls, row: Promotion, family: str) -> Self:
        return cls(
            id=row.id,
            family=family,
            alias=row.alias,
            from_candidate_id=row.from_candidate_id,
            to_candidate_id=row.to_candidate_id,
            decision_id=row.decision_id,
            actor=row.actor,
            override=row.override,
            reason=row.reason,
            created_at=row.created_at,
        )


class PromotionPage(Page[PromotionOut]):
    pass
