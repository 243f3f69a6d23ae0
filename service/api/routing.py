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

from fastapi.dependencies.utils import get_typed_signature
from fastapi.routing import APIRoute, APIRouter
from sqlalchemy.orm import Session

from service.api.deps import TokenCheck
from service.api.schemas.common import ErrorOut
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


_ERRORS: dict[int, str] = {
    400: "The body could not be parsed (not JSON, or a broken form)",
    401: "No bearer token, or an unknown or revoked one",
    403: "The token's scope does not allow this",
    404: "What the path or a filter names does not exist",
    409: "Conflicts with what is stored (a lost race, a reused key, a refused promotion)",
    413: "The request body is over the configured limit (the detail names it)",
    422: "The request is invalid (the detail names the field and the problem)",
    503: "Saturated or briefly without its database; nothing was stored: retry after "
    "Retry-After seconds",
}


def _has_token_check(endpoint: Callable[..., Any]) -> bool:
    for parameter in get_typed_signature(endpoint).parameters.values():
        for meta in getattr(parameter.annotation, "__metadata__", ()):
            if getattr(getattr(meta, "dependency", None), "tunegate_scope", None):
                return True
    return False


def error_responses(
    path: str, methods: Iterable[str], endpoint: Callable[..., Any]
) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can give, each with the real ``{error, detail}`` body."""
    writes = bool(set(methods) - {"GET", "HEAD", "OPTIONS"})
    codes = [422, 503]
    token = _has_token_check(endpoint)
    if token:
        codes += [401, 403]
    if token or "{" in path:
        codes.append(404)
    if writes:
        codes += [400, 409, 413]
    responses: dict[int | str, dict[str, Any]] = {}
    for code in sorted(codes):
        responses[code] = {"model": ErrorOut, "description": _ERRORS[code]}
    responses[503]["headers"] = {
        "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
    }
    return responses


class UnitOfWorkRoute(APIRoute):
    """An ``APIRoute`` whose endpoint is one unit of work on one thread (see module doc).

    Its OpenAPI entry lists every error status it can answer, with the real body.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if kwargs.get("include_in_schema", True):
            errors = error_responses(path, kwargs.get("methods") or ["GET"], endpoint)
            kwargs["responses"] = {**errors, **(kwargs.get("responses") or {})}
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
