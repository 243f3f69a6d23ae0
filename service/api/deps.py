"""Dependencies: one unit of work per request, settings, scoped bearer tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.auth import Principal, Scope, authenticate, require
from service.db.session import unit_of_work
from service.settings import Settings

_bearer = HTTPBearer(auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed when the route returns, rolled back on error."""
    with unit_of_work(request.app.state.sessionmaker) as session:
        yield session


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# scope="function": commit before the response is sent, so a client that got 201
# can read what it created (and background tasks see committed rows).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def ScopedToken(scope: Scope) -> object:
    """``principal: Annotated[Principal, ScopedToken("submit")]`` — 401 without, 403 wrong scope."""

    def _check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        token = credentials.credentials if credentials else None
        with unit_of_work(request.app.state.sessionmaker) as session:
            principal = authenticate(session, token)
        return require(principal, scope)

    return Depends(_check)


ReadToken = Annotated[Principal, ScopedToken("read")]
SubmitToken = Annotated[Principal, ScopedToken("submit")]
PromoteToken = Annotated[Principal, ScopedToken("promote")]
AdminToken = Annotated[Principal, ScopedToken("admin")]
