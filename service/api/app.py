"""The FastAPI application: lifespan (engine, migrations, worker), error rendering, routers."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import __version__
from service.api.limits import BodyLimit, BodyLimits
from service.api.metrics import Metrics
from service.api.openapi import allowed_methods, declare_edge_bounds
from service.api.routers import ROUTERS
from service.api.routers.datasets import PUSH_PATH
from service.api.routing import check_routes
from service.auth import ensure_local_admin_token
from service.db.migrate import upgrade_to_head
from service.db.session import make_engine, make_sessionmaker, unit_of_work
from service.errors import ServiceBusy, TunegateError
from service.settings import Settings, get_settings
from service.upload_sweeper import UploadSweeper
from service.webhook_sender import WebhookSender
from service.worker.dispatch import Dispatcher

if TYPE_CHECKING:
    from service.mlflow_sync import MlflowSync

log = logging.getLogger("tunegate")


def _make_mlflow_sync(app: FastAPI, settings: Settings) -> MlflowSync | None:
    """The MLflow logger thread, when a tracking URI is configured (else ``None``)."""
    if not settings.mlflow_tracking_uri:
        return None
    from service.mlflow_sync import MlflowSync

    sync = MlflowSync(app.state.sessionmaker, settings)
    sync.start()
    return sync


def _make_dispatcher(app: FastAPI, settings: Settings) -> Dispatcher:
    from service.worker.factory import make_dispatcher

    return make_dispatcher(settings, app.state.sessionmaker)


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build the app. The engine, schema, admin token and worker start in the lifespan."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
        # Handler threads never outnumber connections: a request holds one connection
        # on its own thread and commits before it gives the thread back.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        engine = make_engine(
            settings.sqlalchemy_url,
            pool_size=settings.pool_size,
            pool_timeout=settings.db_pool_timeout,
            busy_timeout=settings.db_busy_timeout,
        )
        if migrate:
            upgrade_to_head(settings.sqlalchemy_url)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.metrics = Metrics(app.state.sessionmaker)
        with unit_of_work(app.state.sessionmaker) as session:
            ensure_local_admin_token(session, settings.admin_token_file)
        app.state.dispatcher = _make_dispatcher(app, settings)
        app.state.dispatcher.start()
        app.state.webhooks = WebhookSender(app.state.sessionmaker, settings)
        app.state.webhooks.start()
        app.state.upload_sweeper = UploadSweeper(app.state.sessionmaker, settings.uploads_dir)
        app.state.upload_sweeper.start()
        app.state.mlflow = _make_mlflow_sync(app, settings)
        try:
            yield
        finally:
            if app.state.mlflow is not None:
                app.state.mlflow.stop()
            app.state.upload_sweeper.stop()
            app.state.webhooks.stop()
            app.state.dispatcher.stop()
            engine.dispose()

    app = FastAPI(
        title="tunegate",
        version=__version__,
        summary="A regression gate for fine-tuned language models.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.stopping = threading.Event()  # set when the server begins to stop (long-polls end)

    def body_limit(method: str, path: str) -> BodyLimit:
        if path == "/v1/candidates/upload":
            return BodyLimit(settings.max_upload_bytes, "TUNEGATE_MAX_UPLOAD_BYTES")
        if method == "POST" and PUSH_PATH.fullmatch(path):  # read line by line, bounded there
            return BodyLimit(
                settings.max_dataset_bytes, "TUNEGATE_MAX_DATASET_BYTES", scan_json=False
            )
        return BodyLimit(settings.max_body_bytes, "TUNEGATE_MAX_BODY_BYTES")

    app.add_middleware(BodyLimits, limit_for=body_limit, max_depth=settings.max_json_depth)

    @app.middleware("http")
    async def _metrics(request: Request, call_next):  # type: ignore[no-untyped-def]
        metrics: Metrics | None = getattr(request.app.state, "metrics", None)
        if metrics is None:
            return await call_next(request)
        return await metrics.middleware(request, call_next)

    @app.exception_handler(TunegateError)
    async def _domain_error(_: Request, exc: TunegateError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServiceBusy) else None
        return JSONResponse(
            {"error": type(exc).__name__, "detail": exc.detail},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse(
            {"error": "ValidationError", "detail": "; ".join(parts)}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(routes, request.scope)
        return JSONResponse(
            {"error": name, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {"error": "InternalError", "detail": "internal error; see the server log"},
            status_code=500,
        )

    for router in ROUTERS:
        app.include_router(router)
    check_routes(ROUTERS)
    routes = [*app.router.routes, *(route for router in ROUTERS for route in router.routes)]
    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_edge_bounds(fastapi_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
