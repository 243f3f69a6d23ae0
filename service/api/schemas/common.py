"""Pieces every resource's schemas share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field


def _as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC, so say so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]
"""A datetime always rendered with its UTC offset, whichever database it came from."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
"""Names of datasets and families: URL-safe, 1 to 200 characters."""

ResourceName = Annotated[str, Field(pattern=NAME_PATTERN)]

DB_INT_MAX = 2**31 - 1
"""The largest id or offset a database column holds (PostgreSQL ``integer``)."""

DbId = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
"""A stored row's id in a request body: anything else is a 422, never a database error."""

PlainText = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]
"""One line of text without control characters (NUL included): names, sweeps, tags, paths."""


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list: its items, how many there are in all, and where the page starts."""

    items: list[ItemT]
    total: int = Field(description="Items matching the query, over every page")
    offset: int
    limit: int


class ErrorOut(BaseModel):
    """Every error answer: the error's class name (what a client matches on) and the detail."""

    error: str = Field(description="The class name, e.g. CheckpointNotVisible")
    detail: str


class StatusOut(BaseModel):
    status: str
