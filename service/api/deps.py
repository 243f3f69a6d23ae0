"""Dependencies: one unit of work per request, settings, scoped bearer tokens.

Neither the session nor the token dependency touches the database: each sync
dependency would run on its own threadpool hop, and a connection (or SQLite's
write lock) held from one hop to the next lets a burst deadlock — every thread
waits for a connection that a request holds while it waits for a thread. All
database work of a request, the token check included, runs on the route's own
thread (see :class:`service.api.routing.UnitOfWorkRoute`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.api.schemas.common import DB_INT_MAX
from service.auth import Principal, Scope, authenticate, require
from service.db.session import abandon, release, unit_of_work
from service.settings import Settings

_bearer = HTTPBearer(auto_error=False)

IdPath = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="A stored row's id")]
IdQuery = Annotated[int, Query(ge=1, le=DB_INT_MAX, description="A stored row's id")]
OptionalIdQuery = Annotated[int | None, Query(ge=1, le=DB_INT_MAX)]
OffsetQuery = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="Rows to skip")]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's unit of work (read-only for GET); no connection until first used.

    The route class commits it, or rolls it back, on the route's own thread; the
    exit here only closes a session that holds nothing any more.
    """
    write = request.method not in READ_METHODS
    with unit_of_work(request.app.state.sessionmaker, write=write) as session:
        yield session


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


@dataclass(frozen=True)
class TokenCheck:
    """A bearer token to check against ``scope`` in the request's ``session``.

    The route class replaces it with the :class:`Principal` before the route runs
    (and the app refuses to start if a route with a token check lacks that class).
    """

    scope: Scope
    token: str | None
    session: Session

    def resolve(self) -> Principal:
        """The principal; raises NotAuthenticated (401) or PermissionDenied (403)."""
        return require(authenticate(self.session, self.token), self.scope)


def ScopedToken(scope: Scope) -> object:
    """``principal: Annotated[Principal, ScopedToken("submit")]`` — 401 without, 403 wrong scope.

    The token is checked in the request's own session: one connection per request.
    """

    async def _check(
        session: SessionDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenCheck:
        return TokenCheck(scope, credentials.credentials if credentials else None, session)

    _check.tunegate_scope = scope  # type: ignore[attr-defined]  # marks a token check
    return Depends(_check)


def authorize_now(check: TokenCheck) -> Principal:
    """Check the token at once and give the connection back (call it on a thread).

    For a route that reads a long body before its unit of work begins: a stranger
    is refused before the body is read, and no connection is held while it is.
    The route class checks the token again in the unit of work.
    """
    try:
        principal = check.resolve()
        release(check.session)
    except BaseException as exc:
        abandon(check.session, exc)
        raise
    return principal


_SUBMIT = ScopedToken("submit")
ReadToken = Annotated[Principal, ScopedToken("read")]
SubmitToken = Annotated[Principal, _SUBMIT]
#: The same check as ``SubmitToken``, unresolved: for a dependency to :func:`authorize_now`.
SubmitCheck = Annotated[TokenCheck, _SUBMIT]
PromoteToken = Annotated[Principal, ScopedToken("promote")]
AdminToken = Annotated[Principal, ScopedToken("admin")]
