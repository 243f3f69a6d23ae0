"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service.api.metrics import Metrics
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.common import StatusOut
from service.errors import TunegateError

router = APIRouter(tags=["health"], route_class=UnitOfWorkRoute)


class NotReady(TunegateError):
    status_code = 503


@router.get("/healthz", summary="The process is up")
def healthz() -> StatusOut:
    return StatusOut(status="ok")


@router.get("/readyz", summary="The database is reachable")
def readyz(request: Request) -> StatusOut:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise NotReady(f"database unreachable: {type(exc).__name__}") from exc
    return StatusOut(status="ready")


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
