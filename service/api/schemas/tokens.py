"""Request and response schemas for API tokens."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.common import PlainText, UtcDateTime
from service.auth import Scope
from service.db.models import ApiToken


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope
    name: PlainText = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    """A token's record; never its secret."""

    id: int
    name: str
    scope: str
    created_at: UtcDateTime
    revoked_at: UtcDateTime | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenOut:
        return cls(
            id=row.id,
            name=row.name,
            scope=row.scope,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class IssuedTokenOut(TokenOut):
    token: str
    """The bearer secret, shown this once: only its hash is stored."""
