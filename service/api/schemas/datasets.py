"""Response schemas for datasets (pushes are raw JSONL, not a schema)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from service.api.schemas.common import Page, UtcDateTime
from service.jsontypes import JSONObject

if TYPE_CHECKING:  # the CLI parses these models: no database or service code at import
    from service.datasets import DatasetSummary
    from service.db.models import DatasetExample, DatasetVersion


class DatasetOut(BaseModel):
    name: str
    created_at: UtcDateTime
    n_versions: int
    latest_version: int | None

    @classmethod
    def of(cls, summary: DatasetSummary) -> DatasetOut:
        return cls(
            name=summary.dataset.name,
            created_at=summary.dataset.created_at,
            n_versions=summary.n_versions,
            latest_version=summary.latest_version,
        )


class VersionOut(BaseModel):
    name: str
    version: int
    digest: str
    n_examples: int
    n_in_domain: int
    n_out_domain: int
    n_heldout: int
    generation: JSONObject
    created_at: UtcDateTime

    @classmethod
    def of(cls, version: DatasetVersion) -> VersionOut:
        return VersionOut(
            name=version.dataset.name,
            version=version.version,
            digest=version.digest,
            n_examples=version.n_examples,
            n_in_domain=version.n_in_domain,
            n_out_domain=version.n_out_domain,
            n_heldout=version.n_heldout,
            generation=version.generation,
            created_at=version.created_at,
        )


class PushedVersionOut(VersionOut):
    created: bool
    """False when this content was already stored: the existing version is returned."""

    @classmethod
    def pushed(cls, version: DatasetVersion, *, created: bool) -> PushedVersionOut:
        return cls.model_validate({**VersionOut.of(version).model_dump(), "created": created})


class ExampleOut(BaseModel):
    id: str
    position: int
    input: str
    reference: str | None
    context: str | None
    domain: str
    cohort: str | None
    json_schema: JSONObject | None
    messages: list[dict[str, str]] | None = None
    answers: list[str] | None = None
    choices: list[str] | None = None
    answer: int | None = None
    target: str | None = None
    expect: str | None = None

    @classmethod
    def of(cls, row: DatasetExample) -> ExampleOut:
        return cls(
            id=row.example_key,
            position=row.position,
            input=row.input,
            reference=row.reference,
            context=row.context,
            domain=row.domain,
            cohort=row.cohort,
            json_schema=row.json_schema,
            messages=row.messages,
            answers=row.answers,
            choices=row.choices,
            answer=row.answer,
            target=row.target,
            expect=row.expect,
        )


class ExamplePage(Page[ExampleOut]):
    pass
