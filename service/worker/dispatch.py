"""How a queued evaluation reaches a worker.

The API only calls :meth:`Dispatcher.enqueue` with an evaluation id; the row in the
database is the source of truth (status ``queued``), so a dispatcher that loses a
message loses nothing: the in-process worker also polls for queued rows, and the
Celery path redelivers.
"""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    def enqueue(self, evaluation_id: int) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class NullDispatcher:
    """Leaves evaluations queued (``TUNEGATE_QUEUE=none``): something else runs them."""

    def enqueue(self, evaluation_id: int) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None
