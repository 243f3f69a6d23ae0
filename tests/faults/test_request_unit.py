"""One request, one connection, one thread hop; busy databases answer 503 + Retry-After."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.api.deps import ReadToken, SessionDep
from service.api.routing import check_routes
from tests.checkpoint_files import api_family

Headers = dict[str, str]


def _count_checkouts(client: TestClient) -> list[int]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    seen = [0]

    @event.listens_for(engine, "checkout")
    def _checkout(*_: Any) -> None:
        if not threading.current_thread().name.startswith("tunegate-"):  # not the background
            seen[0] += 1  # threads (webhook sender, worker)

    return seen


def test_a_request_checks_out_one_connection(client: TestClient, auth: Headers) -> None:
    api_family(client, auth)
    seen = _count_checkouts(client)
    assert client.get("/v1/families", headers=auth).status_code == 200
    assert seen[0] == 1  # the token check and the route share the request's session
    assert client.get("/v1/families", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert seen[0] == 2


def test_a_route_without_the_unit_of_work_route_is_refused_at_start() -> None:
    router = APIRouter()

    @router.get("/plain")
    def plain(session: SessionDep, _: ReadToken) -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="not a UnitOfWorkRoute"):
        check_routes([router])


def test_pool_exhaustion_is_503_with_retry_after(client: TestClient, auth: Headers) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    held = [engine.connect() for _ in range(engine.pool.size())]  # every connection taken
    try:
        engine.pool._timeout = 0.05
        response = client.get("/v1/families", headers=auth)
    finally:
        for conn in held:
            conn.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "ServiceBusy"
    assert client.get("/v1/families", headers=auth).status_code == 200
