"""Engines and units of work — the only module that commits or rolls back.

One unit of work per request and per job: :func:`unit_of_work` commits on success
and rolls back on error. Query and service functions only ``flush()``; a request
ends its unit early with :func:`finish` (before the response is serialised), and a
lost insert race rolls back to a :func:`savepoint`, not the whole unit.

Database failures that mean "busy, try again" — the pool's checkout timeout,
SQLite's busy timeout, a PostgreSQL connection killed under us — leave this module
as :class:`~service.errors.ServiceBusy` (503 with ``Retry-After``), never as a bare
library error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from service.errors import ServiceBusy

_READ_ONLY = "tunegate_read_only"
_WROTE = "tunegate_wrote"


def make_engine(
    url: str,
    *,
    pool_size: int = 20,
    pool_timeout: float = 10.0,
    busy_timeout: float = 10.0,
    **kwargs: Any,
) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys on.

    ``pool_size`` connections at most (no overflow), a checkout waits
    ``pool_timeout`` seconds; a SQLite writer waits ``busy_timeout`` seconds for the
    write lock. Both end in :class:`ServiceBusy` rather than a long hang.
    """
    if "poolclass" not in kwargs:
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy_timeout}, **kwargs
        )
        busy_ms = int(busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from pysqlite (which only BEGINs before DML), so
            # SAVEPOINTs nest inside a real transaction and roll back with it.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A read (GET) begins deferred: under WAL it reads a snapshot and never
            # waits for a writer. A write takes the lock up front (IMMEDIATE): a
            # deferred transaction that reads then writes fails at once with
            # "database is locked" when another writer went first; IMMEDIATE waits
            # up to busy_timeout instead.
            read_only = conn.get_execution_options().get(_READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(bind=engine, expire_on_commit=False)

    @event.listens_for(factory, "after_flush")
    def _wrote(session: Session, _context: Any) -> None:
        session.info[_WROTE] = True

    @event.listens_for(factory, "after_commit")
    @event.listens_for(factory, "after_rollback")
    def _ended(session: Session) -> None:
        session.info.pop(_WROTE, None)

    return factory


def _busy(exc: BaseException) -> ServiceBusy | None:
    """The 503 a database error stands for, or None when it is a real error."""
    if isinstance(exc, sa_exc.TimeoutError):
        return ServiceBusy("the server is at capacity (no database connection free); retry")
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return ServiceBusy("the database connection was lost; retry")
        if isinstance(exc, sa_exc.OperationalError):
            text = str(exc.orig).lower()
            if "locked" in text or "busy" in text:
                return ServiceBusy("the database is busy with other writes; retry")
            if type(exc.orig).__module__.startswith("psycopg"):  # server gone or restarting
                return ServiceBusy(
                    f"the database is unavailable ({type(exc.orig).__name__}); retry"
                )
    return None


@contextmanager
def unit_of_work(factory: sessionmaker[Session], *, write: bool = True) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises.

    ``write=False`` marks a read-only unit: on SQLite it begins deferred, so it
    never waits for (or blocks) a writer. Busy/lost-connection errors are raised
    as :class:`ServiceBusy`.
    """
    if write:
        session = factory()
    else:
        bind = factory.kw["bind"]
        session = factory(bind=bind.execution_options(**{_READ_ONLY: True}))
    try:
        yield session
        finish(session)
    except BaseException as exc:
        abandon(session, exc)
        raise
    finally:
        session.close()


def _rollback_quietly(session: Session) -> None:
    try:
        session.rollback()
    except sa_exc.DBAPIError:  # the connection is gone: nothing left to roll back
        session.invalidate()


def abandon(session: Session, exc: BaseException) -> None:
    """Roll the unit back after ``exc``; raises :class:`ServiceBusy` from a busy database."""
    _rollback_quietly(session)
    busy = _busy(exc)
    if busy is not None:
        raise busy from exc


def finish(session: Session) -> None:
    """Commit the unit of work now: a request ends it before its response is serialised.

    The unit's own exit then has nothing left to commit. Raises :class:`ServiceBusy`
    when the commit could not reach the database.
    """
    try:
        session.commit()
    except sa_exc.SQLAlchemyError as exc:
        busy = _busy(exc)
        if busy is not None:
            raise busy from exc
        raise


def release(session: Session) -> None:
    """End the unit's read-only phase before slow work that needs no database.

    Unpacking or hashing a checkpoint must not hold a pooled connection, nor
    SQLite's write lock, for seconds. Whatever the unit reads afterwards begins a
    new transaction, so a write that depends on an earlier read must re-check it
    (a unique constraint plus :func:`savepoint`). Refuses (``RuntimeError``) once
    the unit has flushed a write: that would commit half of it.
    """
    if session.info.get(_WROTE) or session.new or session.dirty or session.deleted:
        raise RuntimeError("release() after a write would commit half a unit of work")
    session.commit()


@contextmanager
def savepoint(session: Session) -> Iterator[SessionTransaction]:
    """A nested transaction: an error inside rolls back to here, the unit stays usable."""
    with session.begin_nested() as nested:
        yield nested
