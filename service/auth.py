"""Bearer tokens with scopes, stored hashed (sha256 of a 256-bit random secret).

Scopes are ordered: ``admin`` ⊇ ``promote`` ⊇ ``submit`` ⊇ ``read``. A token may do
what its scope and every lower scope allow.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import ApiToken
from service.errors import InvalidRequest, NotAuthenticated, PermissionDenied

Scope = Literal["read", "submit", "promote", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "submit", "promote", "admin")
TOKEN_PREFIX = "tg_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name and scope."""

    token_id: int
    name: str
    scope: Scope

    def allows(self, needed: Scope) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, scope: str, name: str) -> str:
    """Store a new token's hash and return the token itself (shown once, never stored)."""
    if scope not in SCOPES:
        raise InvalidRequest(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, scope=scope, token_hash=hash_token(token)))
    session.flush()
    return token


def authenticate(session: Session, token: str | None) -> Principal:
    """The principal for a bearer token; raises NotAuthenticated when missing or unknown."""
    if not token:
        raise NotAuthenticated("missing bearer token (Authorization: Bearer <token>)")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        raise NotAuthenticated("unknown or revoked token")
    return Principal(token_id=row.id, name=row.name, scope=row.scope)  # type: ignore[arg-type]


def require(principal: Principal, scope: Scope) -> Principal:
    if not principal.allows(scope):
        raise PermissionDenied(
            f"this endpoint needs scope {scope!r}; the token has {principal.scope!r}"
        )
    return principal


def ensure_local_admin_token(session: Session, path: Path) -> str:
    """Create the embedded server's admin token file (mode 0600) once; return the token.

    The CLI on the same machine reads it when no token is given, so the local path
    needs no set-up. If the file exists but its token is unknown to this database
    (a new database), a fresh token is written.
    """
    if path.is_file():
        token = path.read_text().strip()
        if token and session.scalar(
            select(ApiToken.id).where(
                ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
            )
        ):
            return token
    token = create_token(session, scope="admin", name="local-admin")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return token
