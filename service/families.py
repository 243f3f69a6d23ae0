"""Families: a line of models sharing a base model, a versioned gate policy and aliases.

Creating a family stores policy version 1 and the family's *base candidate* (a
``Candidate`` with ``kind="base"``): the baseline every candidate is compared with
until a ``production`` alias exists. A policy change makes a new version; old
versions stay, because old gate decisions point at them. Functions here take a
session and only ``flush()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.alias_names import PRODUCTION
from service.aliases import get_alias
from service.checkpoint_paths import expand_home
from service.db.models import Alias, Candidate, Family, GatePolicy
from service.engine.builtin import BUILTIN_MODELS
from service.errors import (
    AlreadyExists,
    CandidateNotFound,
    Conflict,
    FamilyNotFound,
    InvalidRequest,
    NotFound,
)
from service.gate.policy import DEFAULT_POLICY, Policy, parse_policy, policy_json
from service.jsontypes import JSONObject

BASE_CANDIDATE_KIND = "base"
PolicySource = Policy | Mapping[str, Any] | str


# --- inputs ------------------------------------------------------------------------------


def load_policy(source: PolicySource) -> Policy:
    """A policy from a parsed ``Policy``, a JSON object, or JSON/YAML text.

    Raises :class:`~service.errors.InvalidPolicy` with the reason.
    """
    if isinstance(source, Policy):
        return source
    return parse_policy(source if isinstance(source, str) else json.dumps(source))


def policy_body(policy: Policy) -> JSONObject:
    """The stored form of a policy: canonical JSON, defaults and derived rule ids written out."""
    body: JSONObject = json.loads(policy_json(policy))
    return body


def policy_of(row: GatePolicy) -> Policy:
    """The parsed policy of a stored version (what the gate evaluates)."""
    return parse_policy(json.dumps(row.body))


def validate_base_model(base_model: str, model_roots: Sequence[Path]) -> str:
    """Check a family's base model and return what to store.

    A built-in name (``smollm2-135m-instruct``) is kept as is. Anything else must be
    an absolute path to a model folder (with ``config.json``) that, symlinks resolved,
    lies under one of ``model_roots``; the resolved path is returned, so a later
    symlink swap cannot redirect the family. Raises :class:`InvalidRequest`.
    """
    if base_model in BUILTIN_MODELS:
        return base_model
    builtins = ", ".join(BUILTIN_MODELS)
    path = expand_home(base_model, "base_model")
    if not path.is_absolute():
        raise InvalidRequest(
            f"base_model {base_model!r} is neither a built-in model ({builtins}) "
            "nor an absolute path to a model folder"
        )
    roots = [Path(root).expanduser().resolve() for root in model_roots]
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise InvalidRequest(f"base model path {base_model!r} does not exist") from exc
    if not any(real == root or real.is_relative_to(root) for root in roots):
        raise InvalidRequest(
            f"base model path {base_model!r} resolves to {str(real)!r}, outside the allowed "
            f"model roots {[str(root) for root in roots]} (TUNEGATE_MODEL_ROOTS)"
        )
    if not real.is_dir():
        raise InvalidRequest(f"base model path {base_model!r} is not a folder")
    if not (real / "config.json").is_file():
        raise InvalidRequest(f"base model folder {base_model!r} has no config.json")
    return str(real)


# --- writing -----------------------------------------------------------------------------


def create_family(
    session: Session,
    *,
    name: str,
    base_model: str,
    model_roots: Sequence[Path],
    policy: PolicySource | None = None,
) -> Family:
    """Create a family with policy version 1 (``policy`` or ``DEFAULT_POLICY``) and its
    base candidate.

    Raises :class:`InvalidPolicy`, :class:`InvalidRequest` (base model) or
    :class:`AlreadyExists`; nothing is written when it raises.
    """
    parsed = DEFAULT_POLICY if policy is None else load_policy(policy)
    stored_base = validate_base_model(base_model, model_roots)
    if session.scalar(select(Family.id).where(Family.name == name)) is not None:
        raise AlreadyExists(f"family {name!r} already exists")
    family = Family(name=name, base_model=stored_base)
    session.add(family)
    try:
        session.flush()
    except IntegrityError as exc:  # created concurrently; the unit of work rolls back
        raise AlreadyExists(f"family {name!r} already exists") from exc
    session.add(GatePolicy(family_id=family.id, version=1, body=policy_body(parsed)))
    session.add(
        Candidate(
            family_id=family.id,
            name="base",
            kind=BASE_CANDIDATE_KIND,
            checkpoint_path=None,
            base_model=stored_base,
            learning_rate=None,
        )
    )
    session.flush()
    return family


def set_policy(session: Session, family: Family, policy: PolicySource) -> tuple[GatePolicy, bool]:
    """Make ``policy`` the family's current policy.

    Returns ``(version row, created)``: content equal to the *current* policy returns
    the current version and creates nothing; anything else (even an older version's
    content) becomes a new version, because "current" is always the latest. Raises
    :class:`InvalidPolicy`, or :class:`Conflict` when a concurrent change took the
    version number.
    """
    body = policy_body(load_policy(policy))
    current = current_policy(session, family)
    if current.body == body:
        return current, False
    row = GatePolicy(family_id=family.id, version=current.version + 1, body=body)
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # the unit of work rolls back
        raise Conflict(
            f"family {family.name!r}: the policy was changed concurrently; try again"
        ) from exc
    return row, True


# --- reading -----------------------------------------------------------------------------


def get_family(session: Session, name: str) -> Family:
    """Raises :class:`FamilyNotFound`."""
    family = session.scalar(select(Family).where(Family.name == name))
    if family is None:
        raise FamilyNotFound(f"family {name!r} not found")
    return family


def list_families(session: Session) -> list[Family]:
    return list(session.scalars(select(Family).order_by(Family.name)))


def current_policy(session: Session, family: Family) -> GatePolicy:
    """The family's latest policy version."""
    row = session.scalar(
        select(GatePolicy)
        .where(GatePolicy.family_id == family.id)
        .order_by(GatePolicy.version.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(f"family {family.name!r} has no gate policy")
    return row


def get_policy_version(session: Session, family: Family, version: int) -> GatePolicy:
    """One stored policy version; raises :class:`NotFound`."""
    row = session.scalar(
        select(GatePolicy).where(GatePolicy.family_id == family.id, GatePolicy.version == version)
    )
    if row is None:
        raise NotFound(f"family {family.name!r} has no policy version {version}")
    return row


def list_policies(session: Session, family: Family) -> list[GatePolicy]:
    """Every policy version, oldest first."""
    return list(
        session.scalars(
            select(GatePolicy).where(GatePolicy.family_id == family.id).order_by(GatePolicy.version)
        )
    )


def list_aliases(session: Session, family: Family) -> list[Alias]:
    return list(
        session.scalars(select(Alias).where(Alias.family_id == family.id).order_by(Alias.name))
    )


def base_candidate(session: Session, family: Family) -> Candidate:
    """The family's base model as a candidate (``kind="base"``)."""
    row = session.scalar(
        select(Candidate)
        .where(Candidate.family_id == family.id, Candidate.kind == BASE_CANDIDATE_KIND)
        .order_by(Candidate.id)
        .limit(1)
    )
    if row is None:
        raise CandidateNotFound(f"family {family.name!r} has no base candidate")
    return row


def baseline_candidate(session: Session, family: Family) -> Candidate:
    """What candidates are compared with: the ``production`` alias's candidate if the
    alias is set, else the base candidate."""
    alias = get_alias(session, family, PRODUCTION)
    if alias is None:
        return base_candidate(session, family)
    candidate = session.get(Candidate, alias.candidate_id)
    if candidate is None:
        raise CandidateNotFound(f"alias {PRODUCTION!r} points at a missing candidate")
    return candidate


@dataclass(frozen=True)
class FamilyDetail:
    """A family with what a reader wants alongside it."""

    family: Family
    policy_version: int
    base_candidate_id: int
    aliases: dict[str, int]


def describe_family(session: Session, family: Family) -> FamilyDetail:
    return FamilyDetail(
        family=family,
        policy_version=current_policy(session, family).version,
        base_candidate_id=base_candidate(session, family).id,
        aliases={alias.name: alias.candidate_id for alias in list_aliases(session, family)},
    )
