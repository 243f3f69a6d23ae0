"""Numbers derived from a stored gate decision, remembered per process.

A decision compares two finished evaluations whose stored scores never change, so
anything computed from it (the sweep view's paired lift, the slice summary's bootstrap
intervals) is the same on every request: worth computing once. Entries are keyed by the
database, the decision id and its creation time, so a database rebuilt with the same
ids never hits a stale entry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from service.db.models import GateDecision

V = TypeVar("V")

DecisionKey = tuple[str, int, str]


def decision_key(session: Session, decision: GateDecision) -> DecisionKey:
    """(database URL, decision id, creation time) — what identifies a decision's inputs."""
    return (str(session.get_bind().engine.url), decision.id, decision.created_at.isoformat())


class Remembered(Generic[V]):
    """A bounded, thread-safe least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
