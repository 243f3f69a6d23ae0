"""The recovery sweep on a real database (SQLite and PostgreSQL), no broker needed:
expired leases go back to ``queued`` exactly once, and queued rows are re-published
only by a worker that has been idle for the grace period."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service import evaluation_commands
from service.datasets import push_version
from service.db.base import utcnow
from service.db.models import Evaluation, LeaseEvent
from service.db.session import make_engine, make_sessionmaker, unit_of_work
from service.engine import lease
from service.families import base_candidate, create_family, get_family
from service.lifecycle import QUEUED, RUNNING, SUCCEEDED
from service.settings import Settings
from service.worker.recovery import RecoveryLoop, expire_stale_leases, waiting_since
from tests.models import tiny_llama_dir


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def queue_evaluations(factory: sessionmaker[Session], settings: Settings, n: int) -> list[int]:
    """``n`` queued evaluations of the base model, on ``n`` datasets, oldest first."""
    ids = []
    with unit_of_work(factory) as session:
        create_family(
            session,
            name="fam",
            base_model=str(tiny_llama_dir()),
            model_roots=[tiny_llama_dir().parent],
        )
    for k in range(n):
        with unit_of_work(factory) as session:
            push_version(session, f"ds{k}", json.dumps({"input": f"question {k}"}).encode())
            candidate = base_candidate(session, get_family(session, "fam"))
            evaluation, _ = evaluation_commands.create_evaluation(
                session, settings, candidate, f"ds{k}"
            )
            ids.append(evaluation.id)
    return ids


def set_lease(
    factory: sessionmaker[Session], evaluation_id: int, owner: str, seconds: float
) -> None:
    with unit_of_work(factory) as session:
        session.execute(
            update(Evaluation)
            .where(Evaluation.id == evaluation_id)
            .values(
                status=RUNNING,
                lease_owner=owner,
                lease_expires_at=utcnow() + timedelta(seconds=seconds),
            )
        )


def row(factory: sessionmaker[Session], evaluation_id: int) -> Evaluation:
    with factory() as session:
        return session.get_one(Evaluation, evaluation_id)


def events(factory: sessionmaker[Session], evaluation_id: int) -> list[tuple[str, str]]:
    with factory() as session:
        rows = session.execute(
            select(LeaseEvent.worker_id, LeaseEvent.event)
            .where(LeaseEvent.evaluation_id == evaluation_id)
            .order_by(LeaseEvent.id)
        )
        return [(w, e) for w, e in rows]


def test_expired_lease_goes_back_to_queued_once_and_resumes(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    dead, live, waiting = queue_evaluations(factory, settings, 3)
    set_lease(factory, dead, "gone:1", seconds=-1)
    set_lease(factory, live, "busy:2", seconds=60)

    assert expire_stale_leases(factory) == [dead]
    assert expire_stale_leases(factory) == []  # a second sweeper finds nothing to do
    assert row(factory, dead).status == QUEUED
    assert row(factory, dead).lease_owner is None
    assert events(factory, dead) == [("gone:1", "expired")]
    assert row(factory, live).status == RUNNING
    assert row(factory, live).lease_owner == "busy:2"
    assert row(factory, waiting).status == QUEUED

    assert lease.claim(factory, dead, "fresh:3", seconds=30)
    assert not lease.claim(factory, dead, "other:4", seconds=30)
    assert events(factory, dead)[-1] == ("fresh:3", "claimed")


def test_finished_evaluations_are_never_touched(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    (done,) = queue_evaluations(factory, settings, 1)
    with unit_of_work(factory) as session:
        session.execute(
            update(Evaluation)
            .where(Evaluation.id == done)
            .values(status=SUCCEEDED, lease_expires_at=utcnow() - timedelta(hours=1))
        )
    assert expire_stale_leases(factory) == []
    assert waiting_since(factory, utcnow() + timedelta(hours=1)) == []
    assert row(factory, done).status == SUCCEEDED


def test_waiting_since_lists_old_queued_rows_oldest_first(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    ids = queue_evaluations(factory, settings, 3)
    assert waiting_since(factory, utcnow() - timedelta(hours=1)) == []
    assert waiting_since(factory, utcnow() + timedelta(seconds=1)) == ids
    assert waiting_since(factory, utcnow() + timedelta(seconds=1), limit=2) == ids[:2]


def test_sweep_republishes_queued_rows_only_when_idle_long_enough(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    dead, waiting = queue_evaluations(factory, settings, 2)
    set_lease(factory, dead, "gone:1", seconds=-1)
    published: list[int] = []
    idle = {"seconds": 0.0}
    loop = RecoveryLoop(factory, published.append, lambda: idle["seconds"], interval=60, grace=0.5)

    assert loop.sweep() == [dead]  # busy: only the dead worker's evaluation
    assert published == [dead]

    time.sleep(0.6)  # both rows are now older than the grace period
    idle["seconds"] = 0.4
    assert loop.sweep() == []  # idle, but not for long enough
    idle["seconds"] = 0.6
    assert loop.sweep() == [dead, waiting]  # each once, oldest first
    assert published == [dead, dead, waiting]


def test_loop_sweeps_in_the_background_until_stopped(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    (dead,) = queue_evaluations(factory, settings, 1)
    published: list[int] = []
    loop = RecoveryLoop(factory, published.append, lambda: 0.0, interval=0.05, grace=60)
    loop.start()
    try:
        set_lease(factory, dead, "gone:1", seconds=-1)
        deadline = time.monotonic() + 10
        while not published and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        loop.stop()
    assert published == [dead]
    set_lease(factory, dead, "gone:2", seconds=-1)
    time.sleep(0.2)
    assert published == [dead], "a stopped loop still swept"
