"""The embedded default's worker: a thread in the API process that runs queued evaluations.

It runs the same job function as the Celery worker (:func:`run_evaluation`). The
database is the queue of record: ``enqueue`` only wakes the thread, which then
claims the oldest runnable evaluation — ``queued``, or ``running`` with an expired
lease (a process that died mid-run), which it resumes from the stored rows.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Evaluation
from service.db.session import unit_of_work
from service.engine.context import WorkerContext
from service.engine.job import run_group
from service.engine.lease import claimable
from service.engine.sweep_groups import groups
from service.engine.warmup import start_warm_up
from service.settings import Settings

log = logging.getLogger("tunegate.worker")


def runnable_ids(factory: sessionmaker[Session], limit: int = 20) -> list[int]:
    """Evaluations a worker may claim now, oldest first."""
    with unit_of_work(factory, write=False) as session:
        return list(
            session.scalars(
                select(Evaluation.id)
                .where(claimable(utcnow()))
                .order_by(Evaluation.created_at, Evaluation.id)
                .limit(limit)
            )
        )


class InProcessWorker:
    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], poll_seconds: float = 2.0
    ) -> None:
        self.context = WorkerContext(settings=settings, factory=factory)
        self._poll = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def enqueue(self, evaluation_id: int) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            start_warm_up()
            self._thread = threading.Thread(target=self._loop, name="tunegate-worker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def run_pending(self, *, gather: bool = False) -> int:
        """Run every runnable evaluation once; returns how many this worker ran.

        ``gather``: a group admits the rest of its sweep while it prepares, until the newest
        member was queued ``sweep_gather_seconds`` ago (:func:`run_group`); the worker's loop
        gathers, a direct call (tests) runs what is there.
        """
        ran = 0
        context = self.context
        settings = context.settings
        quiet = settings.sweep_gather_seconds if gather and settings.sweep_size > 1 else 0.0
        ids = runnable_ids(context.factory)
        for group in groups(context.factory, ids, settings.sweep_size):
            if self._stop.is_set():
                break
            statuses = run_group(group, context, gather_seconds=quiet, stop=self._stop)
            ran += sum(s is not None for s in statuses.values())
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.run_pending(gather=True):
                    continue
            except Exception:
                log.exception("in-process worker loop error")
            self._wake.wait(self._poll)
            self._wake.clear()
