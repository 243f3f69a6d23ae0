"""Routes for families: create, read, gate policy versions, aliases.

Creating a family needs ``submit``; changing a policy needs ``admin``, because the
policy decides what may reach production.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from service import families, timeline
from service.api.deps import (
    AdminToken,
    OffsetQuery,
    ReadToken,
    SessionDep,
    SettingsDep,
    SubmitToken,
)
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.decisions import TimelineEntryOut, TimelinePage
from service.api.schemas.families import (
    AliasOut,
    FamilyCreate,
    FamilyOut,
    PolicyChangeOut,
    PolicyOut,
)
from service.errors import InvalidPolicy
from service.jsontypes import JSONObject

router = APIRouter(prefix="/v1/families", tags=["families"], route_class=UnitOfWorkRoute)


async def policy_source(request: Request) -> JSONObject | str:
    """A policy body: a JSON object (``application/json``), or JSON/YAML text otherwise."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPolicy("the policy is not valid UTF-8") from exc
    if "json" not in request.headers.get("content-type", ""):
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPolicy(f"policy is not valid JSON: {exc}") from exc
    if not isinstance(data, dict | str):
        raise InvalidPolicy("a JSON policy must be an object (or a string of YAML text)")
    return data


@router.post("", status_code=201, summary="Create a family, its policy v1 and base candidate")
def create_family(
    body: FamilyCreate, session: SessionDep, settings: SettingsDep, _: SubmitToken
) -> FamilyOut:
    family = families.create_family(
        session,
        name=body.name,
        base_model=body.base_model,
        model_roots=settings.allowed_model_roots,
        policy=body.policy,
    )
    return FamilyOut.of(families.describe_family(session, family))


@router.get("", summary="Every family")
def list_families(session: SessionDep, _: ReadToken) -> list[FamilyOut]:
    rows = families.list_families(session)
    return [FamilyOut.of(families.describe_family(session, family)) for family in rows]


@router.get("/{name}", summary="One family with its policy version, aliases and base candidate")
def get_family(name: str, session: SessionDep, _: ReadToken) -> FamilyOut:
    return FamilyOut.of(families.describe_family(session, families.get_family(session, name)))


@router.get("/{name}/policy", summary="The current policy, or version N with ?version=N")
def get_policy(
    name: str,
    session: SessionDep,
    _: ReadToken,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> PolicyOut:
    family = families.get_family(session, name)
    if version is None:
        row = families.current_policy(session, family)
    else:
        row = families.get_policy_version(session, family, version)
    return PolicyOut.of(family.name, row)


@router.put(
    "/{name}/policy",
    summary="Change the policy (JSON object or JSON/YAML text); same content, same version",
    responses={201: {"model": PolicyChangeOut, "description": "a new version was made"}},
)
def put_policy(
    name: str,
    source: Annotated[JSONObject | str, Depends(policy_source)],
    response: Response,
    session: SessionDep,
    _: AdminToken,
) -> PolicyChangeOut:
    family = families.get_family(session, name)
    row, created = families.set_policy(session, family, source)
    response.status_code = 201 if created else 200
    return PolicyChangeOut(**PolicyOut.of(family.name, row).model_dump(), created=created)


@router.get("/{name}/policies", summary="Every policy version, oldest first")
def list_policies(name: str, session: SessionDep, _: ReadToken) -> list[PolicyOut]:
    family = families.get_family(session, name)
    return [PolicyOut.of(family.name, row) for row in families.list_policies(session, family)]


@router.get("/{name}/aliases", summary="The family's aliases and the candidates they name")
def list_aliases(name: str, session: SessionDep, _: ReadToken) -> list[AliasOut]:
    family = families.get_family(session, name)
    return [AliasOut.of(row) for row in families.list_aliases(session, family)]


@router.get("/{name}/decisions", summary="The family's decision timeline, newest first")
def decision_timeline(
    name: str,
    session: SessionDep,
    _: ReadToken,
    offset: OffsetQuery = 0,
    limit: Annotated[int, Query(ge=1, le=timeline.MAX_PAGE)] = 100,
) -> TimelinePage:
    total, rows = timeline.decision_timeline(session, name, offset=offset, limit=limit)
    return TimelinePage(
        family=name,
        total=total,
        offset=offset,
        limit=limit,
        items=[TimelineEntryOut(**asdict(r)) for r in rows],
    )
