"""Datasets: store JSONL pushes as immutable, content-addressed versions; read them back.

The format (records, validation, canonical form, digest) is :mod:`service.dataset_format`.
Functions here take a session and only ``flush()``: the caller's unit of work commits,
so a refused push stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import BinaryIO, Literal

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.dataset_format import (
    OPTIONAL_FIELDS,
    DatasetContent,
    canonical_line,
    example_record,
    parse_dataset,
)
from service.db.base import Base
from service.db.models import Dataset, DatasetExample, DatasetVersion, HeldoutText
from service.errors import ConcurrentUpdate, DatasetNotFound, DatasetVersionNotFound, InvalidRequest
from service.jsontypes import JSONObject
from service.queries.examples import iter_examples, iter_heldout

VersionRef = int | Literal["latest"]
_PUSH_ATTEMPTS = 5


def parse_version_ref(text: str) -> VersionRef:
    """``"latest"`` or a positive version number; raises :class:`InvalidRequest`."""
    if text == "latest":
        return "latest"
    if text.isascii() and text.isdigit() and 1 <= len(text) <= 9 and int(text) >= 1:
        return int(text)
    raise InvalidRequest(f'version must be a positive integer or "latest", not {text!r}')


# --- storing -------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    version: DatasetVersion
    created: bool


def _insert_unless_conflict(session: Session, model: type[Base], values: JSONObject) -> int | None:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING id``: the new row's id, or ``None``
    when a unique constraint already holds such a row (a concurrent push's).

    Used instead of catching ``IntegrityError`` in a savepoint: with pysqlite's implicit
    transactions, a savepoint that opens the transaction commits when released.
    """
    dialect = session.get_bind().dialect.name
    id_column = model.__table__.c.id
    new_id: int | None
    if dialect == "postgresql":
        pg = postgresql_insert(model).values(values).on_conflict_do_nothing()
        new_id = session.scalar(pg.returning(id_column))
    elif dialect == "sqlite":
        lite = sqlite_insert(model).values(values).on_conflict_do_nothing()
        new_id = session.scalar(lite.returning(id_column))
    else:
        raise NotImplementedError(f"no conflict-tolerant insert for {dialect}")
    return new_id


def _dataset_id(session: Session, name: str) -> int:
    found = session.scalar(select(Dataset.id).where(Dataset.name == name))
    if found is not None:
        return found
    new_id = _insert_unless_conflict(session, Dataset, {"name": name})
    return new_id if new_id is not None else get_dataset(session, name).id


def _version_with_digest(session: Session, dataset_id: int, digest: str) -> DatasetVersion | None:
    return session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.digest == digest
        )
    )


_BATCH = 1000  # rows per INSERT: memory for a batch, not for the dataset
_Row = dict[str, object]


def _batches(rows: Iterable[_Row]) -> Iterator[list[_Row]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, _BATCH)):
        yield batch


def _example_row(version_id: int, position: int, record: JSONObject) -> _Row:
    """A canonical example record as a ``dataset_examples`` row (``input`` of a chat
    example: its last user message)."""
    messages = record.get("messages")
    prompt = record.get("input")
    if isinstance(messages, list):
        last = messages[-1]
        assert isinstance(last, dict)
        prompt = last["content"]
    return {
        "dataset_version_id": version_id,
        "position": position,
        "example_key": record["id"],
        "input": prompt,
        "domain": record["domain"],
        "messages": messages,
        **{name: record.get(name) for name in OPTIONAL_FIELDS},
    }


def _insert_version(
    session: Session, dataset_id: int, content: DatasetContent
) -> DatasetVersion | None:
    """Insert the next version with its examples; ``None`` if a concurrent push took
    this digest or this version number. Rows go in batches straight from ``content``
    (no ORM objects), so a spooled push is never held in memory whole."""
    latest = session.scalar(
        select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset_id)
    )
    counts = content.counts
    version_id = _insert_unless_conflict(
        session,
        DatasetVersion,
        {
            "dataset_id": dataset_id,
            "version": (latest or 0) + 1,
            "digest": content.digest,
            "generation": content.generation.stored(),
            "n_examples": counts.n_examples,
            "n_in_domain": counts.n_in_domain,
            "n_out_domain": counts.n_out_domain,
            "n_heldout": counts.n_heldout,
        },
    )
    if version_id is None:
        return None
    records = enumerate(content.example_records())
    examples = (_example_row(version_id, position, record) for position, record in records)
    for batch in _batches(examples):
        session.execute(insert(DatasetExample), batch)
    texts = enumerate(content.heldout_texts())
    heldout = (
        {"dataset_version_id": version_id, "position": position, "text": text}
        for position, text in texts
    )
    for batch in _batches(heldout):
        session.execute(insert(HeldoutText), batch)
    return session.get_one(DatasetVersion, version_id)


def push_version(session: Session, name: str, body: bytes | DatasetContent) -> PushResult:
    """Store a push — JSONL bytes, or content already validated (a spooled stream) —
    as the next version of ``name`` (created on first push).

    Content-addressed: content already stored under this name returns that version
    with ``created=False``. A concurrent push of the same content loses the race on
    the (dataset, digest) unique constraint and returns the winner's version; one of
    different content that took the same version number is retried with the next.
    Raises :class:`InvalidDataset` (nothing is stored) or, after repeated lost races,
    :class:`ConcurrentUpdate` (409).
    """
    content = parse_dataset(body) if isinstance(body, bytes) else body
    digest = content.digest
    dataset_id = _dataset_id(session, name)
    for _ in range(_PUSH_ATTEMPTS):
        existing = _version_with_digest(session, dataset_id, digest)
        if existing is not None:
            return PushResult(existing, created=False)
        inserted = _insert_version(session, dataset_id, content)
        if inserted is not None:
            return PushResult(inserted, created=True)
    raise ConcurrentUpdate(
        f"could not store a version of {name!r}: too many concurrent pushes; retry"
    )


# --- reading -------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSummary:
    dataset: Dataset
    n_versions: int
    latest_version: int | None


def list_datasets(session: Session) -> list[DatasetSummary]:
    """Every dataset by name, with its number of versions and latest version number."""
    rows = session.execute(
        select(Dataset, func.count(DatasetVersion.id), func.max(DatasetVersion.version))
        .outerjoin(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
        .group_by(Dataset.id)
        .order_by(Dataset.name)
    ).all()
    return [DatasetSummary(dataset, count, latest) for dataset, count, latest in rows]


def get_dataset(session: Session, name: str) -> Dataset:
    """Raises :class:`DatasetNotFound`."""
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise DatasetNotFound(f"dataset {name!r} not found")
    return dataset


def summarize(session: Session, name: str) -> DatasetSummary:
    """One dataset's summary; raises :class:`DatasetNotFound`."""
    dataset = get_dataset(session, name)
    versions = list_versions(session, name)
    return DatasetSummary(dataset, len(versions), versions[-1].version if versions else None)


def list_versions(session: Session, name: str) -> list[DatasetVersion]:
    """A dataset's versions, oldest first; raises :class:`DatasetNotFound`."""
    dataset = get_dataset(session, name)
    return list(
        session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.version)
        )
    )


def get_version(session: Session, name: str, version: VersionRef) -> DatasetVersion:
    """A version by number or ``"latest"``.

    Raises :class:`DatasetNotFound` or :class:`DatasetVersionNotFound`.
    """
    dataset = get_dataset(session, name)
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
    if version == "latest":
        query = query.order_by(DatasetVersion.version.desc()).limit(1)
    else:
        query = query.where(DatasetVersion.version == version)
    found = session.scalar(query)
    if found is None:
        raise DatasetVersionNotFound(f"dataset {name!r} has no version {version}")
    return found


def write_version_jsonl(session: Session, version: DatasetVersion, out: BinaryIO) -> None:
    """Write a stored version's canonical JSONL to ``out`` (its sha256 is ``version.digest``),
    reading the examples a batch at a time: memory for a batch, not for the version."""
    out.write(canonical_line({"generation": version.generation}).encode())
    for example in iter_examples(session, version.id):
        out.write(b"\n" + canonical_line(example_record(example)).encode())
    for text in iter_heldout(session, version.id):
        out.write(b"\n" + canonical_line({"heldout": text}).encode())
