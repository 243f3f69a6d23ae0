"""``GET /v1/evaluations/{id}?wait_seconds=N`` — the long-poll ``submit --wait`` uses: it
answers on a change, at once for an ended evaluation, holds no connection while it waits,
and answers at once when its waiter slots are taken. Real database, no model runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api import long_poll
from service.db.models import Evaluation
from tests.api.test_evaluations import Headers, db, evaluate, new_candidate, set_status, world

__all__ = ["new_candidate", "world"]  # fixtures used by name


def _queued(client: TestClient, auth: Headers, make: Callable[..., int]) -> int:
    response = evaluate(client, auth, make())
    assert response.status_code == 201, response.text
    evaluation_id: int = response.json()["id"]
    return evaluation_id


def _timed_get(client: TestClient, auth: Headers, evaluation_id: int, wait: float) -> Any:
    started = time.monotonic()
    response = client.get(
        f"/v1/evaluations/{evaluation_id}", params={"wait_seconds": wait}, headers=auth
    )
    assert response.status_code == 200, response.text
    return response.json(), time.monotonic() - started


def test_wait_answers_on_change_without_holding_a_connection(
    client: TestClient, auth: Headers, world: dict[str, Any], new_candidate: Callable[..., int]
) -> None:
    evaluation_id = _queued(client, auth, new_candidate)
    pool = client.app.state.sessionmaker.kw["bind"].pool  # type: ignore[attr-defined]
    held_while_waiting: list[int] = []

    def progress_later() -> None:
        time.sleep(0.6)
        held_while_waiting.append(pool.checkedout())
        with db(client) as session:
            row = session.get_one(Evaluation, evaluation_id)
            row.status, row.progress_done = "running", 1

    changer = threading.Thread(target=progress_later)
    changer.start()
    body, took = _timed_get(client, auth, evaluation_id, 20)
    changer.join()
    assert body["status"] == "running"
    assert body["progress"]["done"] == 1
    assert 0.5 < took < 5
    assert held_while_waiting == [0]

    # nothing changes: it answers after the wait, with the same state
    body, took = _timed_get(client, auth, evaluation_id, 0.5)
    assert body["progress"]["done"] == 1
    assert took >= 0.5
    # an ended evaluation answers at once
    set_status(client, evaluation_id, "succeeded")
    body, took = _timed_get(client, auth, evaluation_id, 20)
    assert body["status"] == "succeeded"
    assert took < 2


def test_wait_is_bounded(
    client: TestClient,
    auth: Headers,
    world: dict[str, Any],
    new_candidate: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    evaluation_id = _queued(client, auth, new_candidate)
    for bad in (-1, 31, "soon"):
        response = client.get(
            f"/v1/evaluations/{evaluation_id}", params={"wait_seconds": bad}, headers=auth
        )
        assert response.status_code == 422, (bad, response.text)
    # every waiter slot taken: a plain read, at once
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(long_poll, "_waiters", slots)
    assert slots.acquire(blocking=False)
    body, took = _timed_get(client, auth, evaluation_id, 20)
    assert body["status"] == "queued"
    assert took < 2
    slots.release()
    body, took = _timed_get(client, auth, evaluation_id, 0.3)
    assert took >= 0.3


def test_a_stopping_server_ends_the_wait(
    client: TestClient, auth: Headers, world: dict[str, Any], new_candidate: Callable[..., int]
) -> None:
    evaluation_id = _queued(client, auth, new_candidate)
    stopping = client.app.state.stopping  # type: ignore[attr-defined]
    timer = threading.Timer(0.5, stopping.set)
    timer.start()
    body, took = _timed_get(client, auth, evaluation_id, 20)
    timer.join()
    assert body["status"] == "queued"
    assert 0.4 < took < 5
