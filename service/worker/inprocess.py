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
from service.engine.lease import claimable
from service.engine.sweep import gather_delay, groups, run_group
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

    def run_pending(self) -> int:
        """Run every runnable evaluation once; returns how many this worker ran."""
        ran = 0
        context = self.context
        ids = runnable_ids(context.factory)
        for group in groups(context.factory, ids, context.settings.sweep_size):
            if self._stop.is_set():
                break
            ran += sum(s is not None for s in run_group(group, context).values())
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.run_pending():
                    continue
            except Exception:
                log.exception("in-process worker loop error")
            woken = self._wake.wait(self._poll)
            self._wake.clear()
            if woken and self.context.settings.sweep_size > 1:
                self._gather()

    def _gather(self) -> None:
        """Candidates of one sweep are submitted together: wait until the newest evaluation
        to generate was queued ``sweep_gather_seconds`` ago (:func:`gather_delay`; at most
        ten such waits), so they run as one group rather than the first ones alone. Nothing
        to generate (a rescore), or a queue that has been quiet long enough: no wait."""
        quiet = self.context.settings.sweep_gather_seconds
        for _ in range(10):
            delay = gather_delay(self.context.factory, quiet)
            if delay <= 0 or self._stop.wait(delay):
                return
