"""Recovery that does not wait for the broker: find evaluations nobody is running, re-publish.

The database is the queue of record; a broker message is only a wake-up call. Two
kinds of evaluation can be left without a worker:

- ``running`` with an expired lease: its worker died (SIGKILL, OOM, lost machine).
  :func:`expire_stale_leases` moves it back to ``queued`` with one conditional
  UPDATE per row (so of several workers sweeping at once exactly one wins and
  publishes), logging an ``expired`` lease event under the old owner. The rows it
  already wrote stay: the next claim resumes after them.
- ``queued`` with no live message: the API could not reach the broker, or the
  broker lost its data. A broker cannot be asked "is there a message for 17?" in
  a portable way, so a worker answers it from its own state instead: with
  prefetch 1 and late acks an idle worker holds no message, and an idle worker
  would have received any message waiting in its queue. So a worker that has been
  idle for a grace period and still sees an evaluation queued for longer than that
  re-publishes it (:func:`waiting_since`).

A duplicate message is harmless either way: the job's lease claim succeeds for one
worker; for the others ``run_evaluation`` returns ``None`` at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Evaluation
from service.db.session import unit_of_work
from service.engine.lease import lease_expired, log_event
from service.lifecycle import QUEUED, RUNNING, Move, sources

log = logging.getLogger("tunegate.recovery")

# How many rows one sweep looks at; the rest wait for the next sweep.
SWEEP_LIMIT = 100


def expire_stale_leases(factory: sessionmaker[Session], now: datetime | None = None) -> list[int]:
    """Move ``running`` evaluations whose lease passed back to ``queued``; return their ids.

    Each move is conditional on the row still being ``running`` under the same owner
    with the lease still expired, so a worker that claims or renews at the same
    moment is never overwritten and two sweepers never both report a row.
    """
    now = now or utcnow()
    stale = lease_expired(now)
    with unit_of_work(factory, write=False) as session:
        rows = session.execute(
            select(Evaluation.id, Evaluation.lease_owner)
            .where(Evaluation.status == RUNNING, stale)
            .order_by(Evaluation.created_at, Evaluation.id)
            .limit(SWEEP_LIMIT)
        ).all()
    expired: list[int] = []
    for evaluation_id, owner in rows:
        with unit_of_work(factory) as session:
            same_owner = (
                Evaluation.lease_owner.is_(None)
                if owner is None
                else Evaluation.lease_owner == owner
            )
            result = session.execute(
                update(Evaluation)
                .where(
                    Evaluation.id == evaluation_id,
                    Evaluation.status.in_(sources(Move.REQUEUE)),
                    same_owner,
                    stale,
                )
                .values(status=QUEUED, lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                log_event(session, evaluation_id, owner or "unknown", "expired")
                expired.append(evaluation_id)
    return expired


def waiting_since(
    factory: sessionmaker[Session], cutoff: datetime, limit: int = SWEEP_LIMIT
) -> list[int]:
    """``queued`` evaluations created before ``cutoff``, oldest first."""
    with unit_of_work(factory, write=False) as session:
        return list(
            session.scalars(
                select(Evaluation.id)
                .where(and_(Evaluation.status == QUEUED, Evaluation.created_at < cutoff))
                .order_by(Evaluation.created_at, Evaluation.id)
                .limit(limit)
            )
        )


class RecoveryLoop:
    """Sweeps every ``interval`` seconds from a daemon thread in the worker process.

    ``publish(evaluation_id)`` sends one message; ``idle_seconds()`` says how long
    the worker has been without a job (0 while it runs one). Expired leases are
    recovered on every sweep; queued evaluations only once the worker has been
    idle for ``grace`` seconds and the row is older than that (see the module
    docstring for why that means its message is gone).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        publish: Callable[[int], None],
        idle_seconds: Callable[[], float],
        *,
        interval: float,
        grace: float,
    ) -> None:
        self._factory = factory
        self._publish = publish
        self._idle_seconds = idle_seconds
        self.interval = interval
        self.grace = grace
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[int]:
        """One pass; returns the evaluation ids it published."""
        ids = expire_stale_leases(self._factory)
        if ids:
            log.warning("leases expired (worker gone?): evaluations %s requeued", ids)
        if self._idle_seconds() >= self.grace:
            cutoff = utcnow() - timedelta(seconds=self.grace)
            orphans = [i for i in waiting_since(self._factory, cutoff) if i not in ids]
            if orphans:
                log.warning("queued evaluations with no message: %s republished", orphans)
            ids += orphans
        for evaluation_id in ids:
            self._publish(evaluation_id)
        return ids

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="tunegate-recovery", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.sweep()
            except Exception:  # the database or broker blipped: try again next time
                log.exception("recovery sweep failed")
            if self._stop.wait(max(0.0, self.interval - (time.monotonic() - started))):
                return
