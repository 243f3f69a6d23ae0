"""On SQLite a worker's reads never hold the write lock: while any read transaction of a
real job (and of the recovery sweep) is open, another connection can still begin a write
at once — so a long read in a worker never makes an API write wait. Only transactions
that write begin ``IMMEDIATE``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from service.db.base import utcnow
from service.db.session import make_engine, make_sessionmaker
from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from service.worker.recovery import expire_stale_leases, waiting_since

WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_worker_reads_leave_the_sqlite_write_lock_free(
    settings: Settings,
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    capitals_adapter: Path,
) -> None:
    make_family()
    submit(capitals_adapter, lr=1e-2)
    engine = make_engine(settings.sqlalchemy_url)
    path = settings.sqlalchemy_url.split("///", 1)[1]
    reads: list[tuple[str, bool]] = []  # (how its transaction began, could another write?)
    transactions: list[tuple[str, bool]] = []  # (how it began, did it write?)

    def other_writer_can_begin() -> bool:
        # the job's chunk writer thread may hold the lock for the moment of a commit: wait
        # for that; a lock held by this read would be held until the read ends, which it
        # cannot while this probe runs inside it
        other = sqlite3.connect(path, timeout=2.0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            return False
        finally:
            other.close()

    @event.listens_for(engine, "after_cursor_execute")
    def _watch(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb == "BEGIN":
            conn.info["began"], conn.info["wrote"] = statement.strip(), False
        elif verb in WRITES:
            conn.info["wrote"] = True
        elif verb == "SELECT" and conn.info.get("began") == "BEGIN":
            # (a read inside a write holds the lock by design: not probed, nor made to wait)
            reads.append((conn.info["began"], other_writer_can_begin()))

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _ended(conn: Any) -> None:
        if "began" in conn.info:
            transactions.append((conn.info.pop("began"), conn.info.pop("wrote")))

    factory = make_sessionmaker(engine)
    # one beat an hour: the heartbeat thread's writes must not overlap the probes
    quiet = settings.model_copy(update={"heartbeat_seconds": 3600.0})
    assert InProcessWorker(quiet, factory).run_pending() == 2  # baseline and candidate
    assert expire_stale_leases(factory, now=utcnow() + timedelta(days=1)) == []
    assert waiting_since(factory, utcnow()) == []
    engine.dispose()

    deferred = [can for began, can in reads if began == "BEGIN"]
    assert len(deferred) >= 10  # the job's reads: claimable ids, chunks done, cancel checks ...
    assert all(deferred), f"{deferred.count(False)} worker reads held the write lock"
    read_only_locks = [began for began, wrote in transactions if began != "BEGIN" and not wrote]
    assert read_only_locks == []  # every BEGIN IMMEDIATE was for a write
    assert any(began == "BEGIN IMMEDIATE" and wrote for began, wrote in transactions)
