"""The ids a push has used so far, kept in SQLite rather than in a set in memory.

A push's ids must be unique; a million-row push would need a set of a million strings
to check that in memory. The ledger is one table with the id as its primary key
(``WITHOUT ROWID``): a duplicate is found by the index, and SQLite keeps only a small
page cache in memory. The server's spool keeps it in its own file
(:mod:`service.dataset_spool`); a table read on the client keeps it in a private
temporary database (:meth:`IdLedger.scratch`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


class IdLedger:
    """``claim(id, line)``: the line that used ``id`` first, or ``None`` (claimed now)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE ids (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")
        self._db = db

    def claim(self, key: str, number: int) -> int | None:
        try:
            self._db.execute("INSERT INTO ids (key, line) VALUES (?, ?)", (key, number))
        except sqlite3.IntegrityError:
            found = self._db.execute("SELECT line FROM ids WHERE key = ?", (key,)).fetchone()
            return int(found[0])
        return None

    @classmethod
    @contextmanager
    def scratch(cls) -> Iterator[IdLedger]:
        """A ledger in a private temporary database, deleted when the block ends."""
        db = sqlite3.connect("", isolation_level=None)  # "": on disk, deleted on close
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            ledger = cls(db)
            db.execute("BEGIN")
            yield ledger
        finally:
            db.close()
