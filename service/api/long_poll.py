"""``GET /v1/evaluations/{id}?wait_seconds=N``: answer when the evaluation changes.

``tunegate submit --wait`` learns of the end within a fraction of a second instead of a
whole poll interval. The wait is cheap and bounded:

* no connection and no transaction is held while it sleeps: the request's read-only unit
  is released (:func:`service.db.session.release`) before each sleep, and each check is one
  primary-key read (status and progress) in a fresh transaction;
* a waiting request holds a threadpool thread (the route is sync), so at most
  :data:`MAX_WAITERS` requests wait at once per process; any more are answered at once, as
  a plain read — the client then falls back to its poll interval;
* ``wait_seconds`` is at most :data:`MAX_WAIT_SECONDS` (the route's query bound);
* a stopping server (``app.state.stopping``, set by :func:`service.cli.embedded.uvicorn_server`
  when uvicorn is asked to exit) answers its waiters at once, so it does not wait for them.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session

from service.db.session import release
from service.lifecycle import TERMINAL
from service.queries.evaluations import progress_state

MAX_WAIT_SECONDS = 30.0
MAX_WAITERS = 8
CHECK_SECONDS = 0.2

_waiters = threading.BoundedSemaphore(MAX_WAITERS)


def wait_for_change(
    session: Session,
    evaluation_id: int,
    seconds: float,
    *,
    stopping: threading.Event | None = None,
    check_seconds: float = CHECK_SECONDS,
) -> bool:
    """Return once the evaluation's status or progress differs from what it is now, or it has
    ended, or ``seconds`` passed. Returns ``False`` when it did not wait (no free waiter slot,
    ``seconds`` is 0); the caller then reads the evaluation as usual."""
    if seconds <= 0 or not _waiters.acquire(blocking=False):
        return False
    try:
        first = progress_state(session, evaluation_id)
        if first is None or first[0] in TERMINAL:
            return True
        deadline = time.monotonic() + seconds
        while True:
            release(session)  # nothing held while asleep; the next read begins anew
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if (stopping or threading.Event()).wait(min(check_seconds, left)):
                return True
            if progress_state(session, evaluation_id) != first:
                return True
    finally:
        _waiters.release()
