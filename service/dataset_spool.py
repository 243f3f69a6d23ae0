"""A dataset push read as it streams in: memory for one line, the rest on disk.

The HTTP layer feeds the body chunk by chunk (:meth:`DatasetSpool.feed`). Each line
is validated as soon as it is complete (:class:`~service.dataset_format.RecordReader`:
the same rules, the same messages, naming the line), its canonical record is hashed
into the digest as it goes, and it is kept in a private SQLite file — not in memory —
until the unit of work stores the version. The file also holds the ids seen so far
(a primary key: a duplicate id is found without a set of every id in memory) and
the held-out texts, which the canonical form puts after every example.

A line is bounded (``max_line_bytes``); so is its nesting (``max_depth``). Reading
the spool back (:meth:`DatasetSpool.example_records`) yields one record at a time.
The file is a scratch file: :meth:`DatasetSpool.close` deletes it, and the uploads
sweep removes one that a crash left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from evaluators.base import Example
from service.dataset_format import (
    MAX_DEPTH,
    Counts,
    GenerationConfig,
    RecordReader,
    canonical_line,
    example_record,
)
from service.dataset_ids import IdLedger
from service.errors import InvalidDataset
from service.jsontypes import JSONObject

_SCHEMA = (
    "CREATE TABLE examples (record TEXT NOT NULL)",
    "CREATE TABLE heldout (text TEXT NOT NULL)",
)
_BOM = b"\xef\xbb\xbf"


class DatasetSpool:
    """``feed`` chunks, then ``finish``; a :class:`~service.dataset_format.DatasetContent`.

    Not thread-safe, but any one thread at a time may use it (the HTTP layer feeds it
    from worker threads, the unit of work reads it on the route's thread).
    """

    def __init__(self, folder: Path, *, max_line_bytes: int, max_depth: int = MAX_DEPTH) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="dataset-", suffix=".sqlite", dir=folder)
        self.path = Path(name)
        try:
            # A throwaway file: no journal, no fsync; one transaction throughout.
            self._db = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            for statement in _SCHEMA:
                self._db.execute(statement)
            ids = IdLedger(self._db)
            self._db.execute("BEGIN")
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        finally:
            os.close(handle)
        self.max_line_bytes = max_line_bytes
        self._reader = RecordReader(ids.claim, max_depth=max_depth)
        self._hash = hashlib.sha256()
        self._hashing = False  # the generation line is hashed once it is fixed
        self._partial = b""  # the start of a line whose end has not arrived
        self._number = 0  # lines completed so far
        self._counts: Counts | None = None
        self._digest = ""

    # --- writing ---------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Read the complete lines in ``partial + chunk``; raises :class:`InvalidDataset`."""
        data = self._partial + chunk
        end = data.rfind(b"\n")
        if end < 0:
            self._partial = data
            self._check_length(self._partial, self._number + 1)
            return
        examples: list[tuple[str]] = []
        heldout: list[tuple[str]] = []
        for raw in data[:end].split(b"\n"):
            self._read(raw, examples, heldout)
        self._store(examples, heldout)
        self._partial = data[end + 1 :]
        self._check_length(self._partial, self._number + 1)

    def finish(self) -> DatasetSpool:
        """Read the last line and compute the digest; raises :class:`InvalidDataset`."""
        examples: list[tuple[str]] = []
        heldout: list[tuple[str]] = []
        self._read(self._partial, examples, heldout)
        self._partial = b""
        self._store(examples, heldout)
        self._counts = self._reader.finish()
        self._start_hashing()
        for text in self.heldout_texts():
            self._hash.update(b"\n" + canonical_line({"heldout": text}).encode())
        self._digest = self._hash.hexdigest()
        return self

    def close(self) -> None:
        """Delete the spool file (idempotent)."""
        self._db.close()
        self.path.unlink(missing_ok=True)

    def _check_length(self, line: bytes, number: int) -> None:
        if len(line) > self.max_line_bytes:
            raise InvalidDataset(
                f"line {number}: longer than the limit of {self.max_line_bytes} bytes "
                "(TUNEGATE_MAX_DATASET_LINE_BYTES)"
            )

    def _read(self, raw: bytes, examples: list[tuple[str]], heldout: list[tuple[str]]) -> None:
        self._number += 1
        number = self._number
        self._check_length(raw, number)
        try:
            text = raw.removeprefix(_BOM) if number == 1 else raw
            line = text.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as exc:
            raise InvalidDataset(f"line {number}: not valid UTF-8") from exc
        got = self._reader.read(number, line)
        if got is None or isinstance(got, GenerationConfig):
            return
        self._start_hashing()
        if isinstance(got, Example):
            record = canonical_line(example_record(got))
            self._hash.update(b"\n" + record.encode())
            examples.append((record,))
        else:
            heldout.append((got,))

    def _start_hashing(self) -> None:
        if not self._hashing:
            generation: JSONObject = {"generation": self._reader.generation.stored()}
            self._hash.update(canonical_line(generation).encode())
            self._hashing = True

    def _store(self, examples: list[tuple[str]], heldout: list[tuple[str]]) -> None:
        self._db.executemany("INSERT INTO examples (record) VALUES (?)", examples)
        self._db.executemany("INSERT INTO heldout (text) VALUES (?)", heldout)

    # --- reading (after finish) ------------------------------------------------------

    @property
    def generation(self) -> GenerationConfig:
        return self._reader.generation

    @property
    def digest(self) -> str:
        if self._counts is None:
            raise RuntimeError("the spool is not finished")
        return self._digest

    @property
    def counts(self) -> Counts:
        if self._counts is None:
            raise RuntimeError("the spool is not finished")
        return self._counts

    def example_records(self) -> Iterator[JSONObject]:
        for (record,) in self._db.execute("SELECT record FROM examples ORDER BY rowid"):
            loaded: JSONObject = json.loads(record)
            yield loaded

    def heldout_texts(self) -> Iterator[str]:
        for (text,) in self._db.execute("SELECT text FROM heldout ORDER BY rowid"):
            yield str(text)
