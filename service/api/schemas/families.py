"""Request and response schemas for families, their policies and aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.common import PlainText, ResourceName, UtcDateTime
from service.jsontypes import JSONObject

if TYPE_CHECKING:  # the CLI parses these models: no database or service code at import
    from service.db.models import Alias, GatePolicy
    from service.families import FamilyDetail


class FamilyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ResourceName
    base_model: PlainText = Field(
        min_length=1,
        max_length=1000,
        description="'smollm2-135m-instruct' or an absolute model folder under the model roots",
    )
    policy: JSONObject | str | None = Field(
        default=None, description="A gate policy as a JSON object or JSON/YAML text"
    )


class FamilyOut(BaseModel):
    name: str
    base_model: str
    created_at: UtcDateTime
    policy_version: int
    base_candidate_id: int
    aliases: dict[str, int]
    """Alias name → candidate id."""

    @classmethod
    def of(cls, detail: FamilyDetail) -> FamilyOut:
        return cls(
            name=detail.family.name,
            base_model=detail.family.base_model,
            created_at=detail.family.created_at,
            policy_version=detail.policy_version,
            base_candidate_id=detail.base_candidate_id,
            aliases=detail.aliases,
        )


class PolicyOut(BaseModel):
    family: str
    version: int
    policy: JSONObject
    created_at: UtcDateTime

    @classmethod
    def of(cls, family: str, row: GatePolicy) -> PolicyOut:
        return cls(family=family, version=row.version, policy=row.body, created_at=row.created_at)


class PolicyChangeOut(PolicyOut):
    created: bool
    """False when the policy equals the current one: no new version was made."""


class AliasOut(BaseModel):
    name: str
    candidate_id: int
    updated_at: UtcDateTime

    @classmethod
    def of(cls, row: Alias) -> AliasOut:
        return cls(name=row.name, candidate_id=row.candidate_id, updated_at=row.updated_at)
