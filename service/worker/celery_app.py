"""The Celery worker: ``tunegate worker`` runs queued evaluations one at a time.

The message carries the evaluation id only; the job (:func:`run_evaluation`)
reloads everything from the database and takes the evaluation's lease there, so
a redelivered or duplicated message is harmless.

Choices, and why:

- **solo pool, concurrency 1, prefetch 1**: one evaluation per worker (one per
  GPU). The job runs in the worker's main process, so the :class:`WorkerContext`
  (base models loaded once, LoRA adapters swapped; scorers) lives there and
  survives between jobs; nothing forks after CUDA is initialised, and a SIGKILL
  leaves no orphaned child holding GPU memory. Scale by running more workers.
- **late acks, reject on worker lost**: a message is acknowledged after the job
  returned, so a worker that dies mid-run does not lose it (the broker requeues
  it when the connection drops — RabbitMQ at once, Redis after its visibility
  timeout). Recovery does not wait for that: see :mod:`service.worker.recovery`.
- **long evaluations**: Redis re-delivers an unacknowledged message after
  ``visibility_timeout`` (here ``TUNEGATE_VISIBILITY_TIMEOUT``, default 12 h);
  a re-delivery during a live run only costs a failed claim. On RabbitMQ the
  AMQP heartbeat is off (the solo pool cannot answer it during a job) and the
  broker's ``consumer_timeout`` must exceed the longest evaluation.

Environment read here (not in :class:`Settings` yet): ``TUNEGATE_CELERY_QUEUE``
(queue name, default ``tunegate``), ``TUNEGATE_VISIBILITY_TIMEOUT`` (seconds),
``TUNEGATE_RECOVERY_SECONDS`` (sweep interval, default ``lease_seconds``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.db.session import make_engine, make_sessionmaker
from service.settings import Settings, get_settings
from service.worker.recovery import RecoveryLoop

if TYPE_CHECKING:
    from service.engine.context import WorkerContext

log = logging.getLogger("tunegate.worker")

TASK_NAME = "tunegate.run_evaluation"
DEFAULT_QUEUE = "tunegate"
DEFAULT_VISIBILITY_TIMEOUT = 12 * 3600


@dataclass(frozen=True)
class QueueOptions:
    """Broker-side options that are not (yet) fields of :class:`Settings`."""

    queue: str
    visibility_timeout: int
    recovery_seconds: float

    @classmethod
    def from_env(cls, settings: Settings) -> QueueOptions:
        return cls(
            queue=settings.celery_queue,
            visibility_timeout=settings.visibility_timeout,
            recovery_seconds=settings.recovery_seconds or float(settings.lease_seconds),
        )


def make_celery(settings: Settings, options: QueueOptions | None = None) -> Celery:
    """A Celery app on ``settings.broker_url`` with the evaluation task registered."""
    options = options or QueueOptions.from_env(settings)
    app = Celery("tunegate", broker=settings.broker_url, set_as_current=False)
    transport: dict[str, Any] = {}
    if settings.broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        transport["visibility_timeout"] = options.visibility_timeout
    app.conf.update(
        task_default_queue=options.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_concurrency=1,
        worker_prefetch_multiplier=1,
        worker_pool="solo",
        worker_send_task_events=False,
        # the solo pool cannot answer remote control while a job runs; use signals
        worker_enable_remote_control=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts_level="INFO",  # progress bars are not warnings
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        # AMQP heartbeats are sent from the worker's event loop, which the solo
        # pool blocks for the whole job; RabbitMQ would drop the connection.
        broker_heartbeat=0,
    )
    app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)(
        evaluate
    )
    return app


def default_worker_id(settings: Settings) -> str:
    """``TUNEGATE_WORKER_ID``, else ``host:pid``."""
    return settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"


class WorkerRuntime:
    """One per worker process: the database, the one :class:`WorkerContext`, idleness."""

    def __init__(self, settings: Settings) -> None:
        # imported here: the job pulls in torch, which `tunegate --help` should not pay for
        from service.engine.context import WorkerContext

        self.settings = settings
        self.engine: Engine = make_engine(settings.sqlalchemy_url)
        self.factory: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.context: WorkerContext = WorkerContext(
            settings=settings, factory=self.factory, worker_id=default_worker_id(settings)
        )
        self._lock = threading.Lock()
        self._idle_since: float | None = time.monotonic()

    def run(self, evaluation_id: int) -> str | None:
        """Run one evaluation in this process; ``None`` when another worker holds it."""
        from service.engine.job import run_group
        from service.engine.sweep_groups import siblings

        settings = self.settings
        with self._lock:  # one evaluation (or one sweep group) at a time
            self._idle_since = None
            try:
                group = siblings(self.factory, evaluation_id, settings.sweep_size)
                # the rest of a sweep may still be arriving: the group admits it while it
                # prepares (run_group's gather)
                quiet = settings.sweep_gather_seconds if settings.sweep_size > 1 else 0.0
                status = run_group(group, self.context, gather_seconds=quiet)[evaluation_id]
            finally:
                self._idle_since = time.monotonic()
        log.info(
            "evaluation %s: %s",
            evaluation_id,
            status or "skipped (finished, cancelled or leased by another worker)",
        )
        return status

    def idle_seconds(self) -> float:
        """How long no job has been running here (0 while one runs)."""
        since = self._idle_since
        return 0.0 if since is None else time.monotonic() - since


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def current_runtime() -> WorkerRuntime:
    """The process-wide runtime, built on first use (in the process that runs jobs)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = WorkerRuntime(get_settings())
        return _runtime


def evaluate(evaluation_id: int) -> str | None:
    """The Celery task body: run (or resume) one evaluation by id."""
    return current_runtime().run(int(evaluation_id))


def run_worker(*, loglevel: str = "info", queue: str | None = None) -> int:
    """Run a Celery worker (with its recovery loop) until it stops; returns its exit code."""
    settings = get_settings()
    options = QueueOptions.from_env(settings)
    if queue:
        options = QueueOptions(queue, options.visibility_timeout, options.recovery_seconds)
    if settings.queue != "celery":
        log.warning("TUNEGATE_QUEUE=%s: the API is not publishing to Celery", settings.queue)
    app = make_celery(settings, options)
    runtime = current_runtime()

    def publish(evaluation_id: int) -> None:
        app.send_task(TASK_NAME, args=[evaluation_id], queue=options.queue)

    recovery = RecoveryLoop(
        runtime.factory,
        publish,
        runtime.idle_seconds,
        interval=options.recovery_seconds,
        grace=options.recovery_seconds,
    )
    log.info(
        "tunegate worker %s on %s queue %s (database %s)",
        runtime.context.worker_id,
        settings.broker_url.split("@")[-1],
        options.queue,
        settings.sqlalchemy_url.split("@")[-1],
    )
    recovery.start()
    from service.engine.warmup import start_warm_up

    start_warm_up()
    try:
        # app.start, unlike app.worker_main, returns the worker's exit code
        code = app.start(
            [
                "worker",
                f"--loglevel={loglevel}",
                "--pool=solo",
                "--concurrency=1",
                "--prefetch-multiplier=1",
                "--without-gossip",
                "--without-mingle",
                f"--queues={options.queue}",
                f"--hostname=tunegate-{os.getpid()}@{socket.gethostname()}",
            ]
        )
    finally:
        recovery.stop()
        runtime.engine.dispose()
    return int(code or 0)
