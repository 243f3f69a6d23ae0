"""Aliases (named pointers such as ``production`` to a family's candidate) and their history.

This module is the read side: the current target of an alias and the audit
trail of promotions. Moving an alias is done by the promotion code, behind a
passing gate decision, and records a :class:`~service.db.models.Promotion` row.
"""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from service.db.models import Alias, Family, Promotion
from service.errors import InvalidRequest

MAX_PAGE = 500


def get_alias(session: Session, family: Family, name: str) -> Alias | None:
    """The family's alias ``name``, or ``None`` when it was never set."""
    return session.scalar(select(Alias).where(Alias.family_id == family.id, Alias.name == name))


def list_promotions(
    session: Session,
    family_id: int | None = None,
    *,
    alias: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> list[Promotion]:
    """Promotions (all families, or one), newest first. Raises ``InvalidRequest`` for a bad page."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequest(f"limit must be within 1..{MAX_PAGE} and offset ≥ 0")
    query = _promotions(family_id, alias).order_by(Promotion.id.desc())
    return list(session.scalars(query.offset(offset).limit(limit)))


def count_promotions(
    session: Session, family_id: int | None = None, *, alias: str | None = None
) -> int:
    """How many promotions :func:`list_promotions` pages through."""
    return session.scalar(_promotions(family_id, alias).with_only_columns(func.count())) or 0


def _promotions(family_id: int | None, alias: str | None) -> Select[Promotion]:
    query = select(Promotion)
    if family_id is not None:
        query = query.where(Promotion.family_id == family_id)
    if alias is not None:
        query = query.where(Promotion.alias == alias)
    return query


def family_names(session: Session, promotions: list[Promotion]) -> dict[int, str]:
    """Family id → name for the families these promotions belong to (one query)."""
    ids = {p.family_id for p in promotions}
    if not ids:
        return {}
    return {
        row.id: row.name
        for row in session.execute(select(Family.id, Family.name).where(Family.id.in_(ids)))
    }
