"""Exclusive execution of an evaluation: a lease in the database.

A worker claims an evaluation with one conditional UPDATE (atomic on SQLite and
PostgreSQL alike): it succeeds only while the row is ``queued``, or ``running`` with
an expired lease (its worker died). The holder renews the lease from a heartbeat
thread; a renewal that finds another owner means the lease was lost and the job
stops at its next chunk. Every claim, release and loss is logged in
``lease_events`` so exclusivity can be checked after the fact.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Evaluation, LeaseEvent
from service.db.session import unit_of_work
from service.lifecycle import QUEUED, RUNNING, Move, sources


def lease_expired(now: datetime) -> ColumnElement[bool]:
    """A running evaluation's lease has passed (or was never set): its worker is gone."""
    return or_(Evaluation.lease_expires_at.is_(None), Evaluation.lease_expires_at < now)


def claimable(now: datetime) -> ColumnElement[bool]:
    """What a worker may claim (the lifecycle's *claim*): ``queued``, or ``running`` with
    an expired lease."""
    return and_(
        Evaluation.status.in_(sources(Move.CLAIM)),
        or_(Evaluation.status == QUEUED, lease_expired(now)),
    )


def claim(factory: sessionmaker[Session], evaluation_id: int, worker_id: str, seconds: int) -> bool:
    """Take the evaluation's lease; False when another live worker holds it or it is done."""
    now = utcnow()
    with unit_of_work(factory) as session:
        result = session.execute(
            update(Evaluation)
            .where(Evaluation.id == evaluation_id, claimable(now))
            .values(
                status=RUNNING,
                lease_owner=worker_id,
                lease_expires_at=now + timedelta(seconds=seconds),
                attempts=Evaluation.attempts + 1,
                started_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        claimed = bool(result.rowcount == 1)  # type: ignore[attr-defined]
        if claimed:
            session.add(
                LeaseEvent(evaluation_id=evaluation_id, worker_id=worker_id, event="claimed")
            )
    return claimed


def renew(factory: sessionmaker[Session], evaluation_id: int, worker_id: str, seconds: int) -> bool:
    """Extend the lease; False when this worker no longer holds it."""
    with unit_of_work(factory) as session:
        result = session.execute(
            update(Evaluation)
            .where(
                Evaluation.id == evaluation_id,
                Evaluation.lease_owner == worker_id,
                Evaluation.status == RUNNING,
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def log_event(session: Session, evaluation_id: int, worker_id: str, event: str) -> None:
    session.add(LeaseEvent(evaluation_id=evaluation_id, worker_id=worker_id, event=event))


class Heartbeat:
    """Renews a lease every ``interval`` seconds in a daemon thread while the job runs."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        evaluation_id: int,
        worker_id: str,
        *,
        lease_seconds: int,
        interval: float,
    ) -> None:
        self._factory = factory
        self._evaluation_id = evaluation_id
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._interval = interval
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{evaluation_id}", daemon=True
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not renew(
                    self._factory, self._evaluation_id, self._worker_id, self._lease_seconds
                ):
                    self.lost.set()
                    return
            except Exception:  # a database blip: try again next beat; the lease has slack
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
