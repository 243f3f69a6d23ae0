"""The service's own dashboard: a static page and its scripts, reading the REST API.

Only the files named in ``ASSETS`` are served (no path from the request reaches the
file system). Every response carries a Content-Security-Policy that allows scripts and
styles from this server alone: no inline script runs, so text that reaches the page
(model outputs, dataset texts) can never execute, even if it were mistaken for markup.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from service.api.routing import UnitOfWorkRoute
from service.errors import TunegateError

router = APIRouter(tags=["dashboard"], include_in_schema=False, route_class=UnitOfWorkRoute)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
ASSETS = {
    "dashboard.js": "text/javascript",
    "api.js": "text/javascript",
    "dom.js": "text/javascript",
    "charts.js": "text/javascript",
    "sweep.js": "text/javascript",
    "candidate.js": "text/javascript",
    "dashboard.css": "text/css",
}
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class AssetNotFound(TunegateError):
    status_code = 404


def _static(name: str) -> str:
    return resources.files("service").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)


@router.get("/dashboard")
def dashboard() -> Response:
    return Response(_static("dashboard.html"), media_type="text/html", headers=HEADERS)


@router.get("/dashboard/assets/{name}")
def asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise AssetNotFound(f"no dashboard asset {name!r}; known: {', '.join(sorted(ASSETS))}")
    return Response(_static(name), media_type=media_type, headers=HEADERS)
