"""The route class every router uses: one thread hop holds all of a request's database work.

FastAPI runs each sync dependency and the route on separate threadpool hops, then
serialises the return value on another hop, and closes yield-dependencies after
that. A connection (or SQLite's write lock) held across hops lets a burst
deadlock: every thread waits for a connection that a request holds while it
waits for a thread. :class:`UnitOfWorkRoute` runs the token check, the route and
the commit (or rollback) on the route's own thread, so a response is built from
committed data and a request never holds a connection while it waits.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from fastapi.routing import APIRoute, APIRouter
from sqlalchemy.orm import Session

from service.api.deps import TokenCheck
from service.db.session import abandon, finish


def _sessions(values: dict[str, Any]) -> list[Session]:
    found: list[Session] = []
    for value in values.values():
        session = value.session if isinstance(value, TokenCheck) else value
        if isinstance(session, Session) and all(session is not s for s in found):
            found.append(session)
    return found


def committing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` run as one unit: token checks first, then commit — or roll back."""
    if inspect.iscoroutinefunction(endpoint):
        raise TypeError(f"{endpoint.__name__}: database routes are sync (they run on a thread)")

    @functools.wraps(endpoint)
    def run(**values: Any) -> Any:
        sessions = _sessions(values)
        try:
            for name, value in values.items():
                if isinstance(value, TokenCheck):
                    values[name] = value.resolve()
            result = endpoint(**values)
            for session in sessions:
                finish(session)
        except BaseException as exc:
            for session in sessions:
                abandon(session, exc)
            raise
        return result

    return run


class UnitOfWorkRoute(APIRoute):
    """An ``APIRoute`` whose endpoint is one unit of work on one thread (see module doc)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, committing(endpoint), **kwargs)


def _calls(route: APIRoute) -> Iterable[Any]:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        yield dependant.call
        stack.extend(dependant.dependencies)


def check_routes(routers: Iterable[APIRouter]) -> None:
    """Refuse to start when a route with a token check or session is not a UnitOfWorkRoute."""
    from service.api.deps import get_session

    for route in (route for router in routers for route in router.routes):
        if isinstance(route, APIRoute) and not isinstance(route, UnitOfWorkRoute):
            if any(call is get_session for call in _calls(route)):
                raise RuntimeError(
                    f"route {route.path} uses the session or a token but is not a "
                    "UnitOfWorkRoute (APIRouter(route_class=UnitOfWorkRoute))"
                )
