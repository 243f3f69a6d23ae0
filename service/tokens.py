"""API tokens as a resource: issue, list, revoke. Hashing and checking live in
:mod:`service.auth`; a token's secret is returned once, at issue, and never stored."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth import create_token, hash_token
from service.db.base import utcnow
from service.db.models import ApiToken
from service.errors import NotFound


def issue_token(session: Session, *, scope: str, name: str) -> tuple[ApiToken, str]:
    """A new token: its row and its secret (shown once). Raises ``InvalidRequest`` on a bad
    scope."""
    secret = create_token(session, scope=scope, name=name)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    assert row is not None  # just flushed in this session
    return row, secret


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int) -> ApiToken:
    """Revoke a token (idempotent: revoking twice keeps the first time). Raises ``NotFound``."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row
