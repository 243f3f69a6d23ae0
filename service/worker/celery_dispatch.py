"""The API side of the Celery path: publish one message (the evaluation id) per queued job.

The row is already committed as ``queued`` when :meth:`CeleryDispatcher.enqueue`
runs, so a broker that cannot be reached loses nothing: the failure is logged and
an idle worker re-publishes the evaluation (:mod:`service.worker.recovery`).
"""

from __future__ import annotations

import logging

from service.settings import Settings
from service.worker.celery_app import TASK_NAME, QueueOptions, make_celery

log = logging.getLogger("tunegate.dispatch")

# Publishing retries a few times (connection errors), then gives up on this message.
_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


class CeleryDispatcher:
    """Publishes ``tunegate.run_evaluation(evaluation_id)`` on the configured broker."""

    def __init__(self, settings: Settings) -> None:
        self._options = QueueOptions.from_env(settings)
        self._app = make_celery(settings, self._options)
        self._broker = settings.broker_url.split("@")[-1]

    def enqueue(self, evaluation_id: int) -> None:
        try:
            self._app.send_task(
                TASK_NAME,
                args=[evaluation_id],
                queue=self._options.queue,
                retry=True,
                retry_policy=_RETRY_POLICY,
            )
        except Exception:
            log.exception(
                "could not publish evaluation %s to %s; it stays queued and an idle worker "
                "will pick it up",
                evaluation_id,
                self._broker,
            )

    def start(self) -> None:
        return None

    def stop(self) -> None:
        self._app.close()
