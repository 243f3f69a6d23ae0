"""The periodic sweep of the uploads folder: what a crash or a lost race left behind.

Refused uploads clean up after themselves (see :mod:`service.archives`); a process
killed mid-upload cannot. Every ``interval`` seconds this thread removes spooled
archives, scratch folders and ``uploads/<sha256>`` folders that no candidate
refers to, once they are older than ``max_age`` seconds (a day by default, so an
upload in flight is never touched).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.archives import sweep_orphans
from service.db.models import Candidate
from service.db.session import unit_of_work

log = logging.getLogger("tunegate.uploads")


def referenced_uploads(session: Session, uploads_dir: Path) -> set[str]:
    """Names of the ``uploads/<name>`` folders some candidate's checkpoint lies under."""
    names: set[str] = set()
    for raw in session.scalars(
        select(Candidate.checkpoint_path).where(Candidate.source == "upload")
    ):
        if raw is None:
            continue
        try:
            names.add(Path(raw).relative_to(uploads_dir).parts[0])
        except (ValueError, IndexError):
            continue
    return names


def sweep_uploads(factory: sessionmaker[Session], uploads_dir: Path, max_age: float) -> list[Path]:
    """One sweep; returns what was removed."""
    with unit_of_work(factory, write=False) as session:
        referenced = referenced_uploads(session, uploads_dir)
    return sweep_orphans(uploads_dir, referenced, older_than=max_age)


class UploadSweeper:
    """A daemon thread running :func:`sweep_uploads` every ``interval`` seconds."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        uploads_dir: Path,
        *,
        interval: float = 3600.0,
        max_age: float = 86400.0,
    ) -> None:
        self._factory = factory
        self._uploads = uploads_dir
        self._interval = interval
        self._max_age = max_age
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tunegate-uploads", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                removed = sweep_uploads(self._factory, self._uploads, self._max_age)
                if removed:
                    log.info("removed %d orphaned upload leftovers", len(removed))
            except Exception:
                log.exception("upload sweep failed; retrying at the next interval")
