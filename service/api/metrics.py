"""Prometheus metrics: request counts and latency, queue depth, evaluations by status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from service.db.models import Evaluation
from service.db.session import unit_of_work
from service.lifecycle import QUEUED, STATUSES


class EvaluationCollector(Collector):
    """Reads evaluation counts from the database at scrape time (no state to drift)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_status = GaugeMetricFamily(
            "tunegate_evaluations", "Evaluations by status", labels=["status"]
        )
        depth = GaugeMetricFamily("tunegate_queue_depth", "Evaluations waiting to run")
        with unit_of_work(self._factory, write=False) as session:
            rows = dict(
                session.execute(
                    select(Evaluation.status, func.count()).group_by(Evaluation.status)
                ).all()
            )
        for status in STATUSES:
            by_status.add_metric([status], float(rows.get(status, 0)))
        depth.add_metric([], float(rows.get(QUEUED, 0)))
        yield by_status
        yield depth


class Metrics:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tunegate_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tunegate_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(EvaluationCollector(factory))

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        self.requests.labels(request.method, path, str(response.status_code)).inc()
        self.latency.labels(request.method, path).observe(perf_counter() - start)
        return response
