"""The examples and held-out texts of a dataset version."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from evaluators.base import Example
from service.db.models import DatasetExample, HeldoutText


def example_rows(
    session: Session, version_id: int, *, offset: int = 0, limit: int | None = None
) -> list[DatasetExample]:
    """A version's example rows ordered by position (all of them unless ``limit``)."""
    query = (
        select(DatasetExample)
        .where(DatasetExample.dataset_version_id == version_id)
        .order_by(DatasetExample.position)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def example_of(row: DatasetExample) -> Example:
    """A stored example as the scorers (and the canonical JSONL) see it."""
    return Example(
        id=row.example_key,
        input=row.input,
        reference=row.reference,
        context=row.context,
        domain="out" if row.domain == "out" else "in",
        cohort=row.cohort,
        json_schema=row.json_schema,
        messages=row.messages,
        answers=row.answers,
        choices=row.choices,
        answer=row.answer,
        target=row.target,
        expect="refuse" if row.expect == "refuse" else "comply" if row.expect else None,
    )


def examples_of(session: Session, version_id: int) -> list[Example]:
    """Every example of a version, in order."""
    return [example_of(row) for row in example_rows(session, version_id)]


def iter_examples(session: Session, version_id: int, *, batch: int = 1000) -> Iterator[Example]:
    """Every example of a version, in order, fetched ``batch`` rows at a time (one query:
    a large version is never in memory whole)."""
    query = (
        select(DatasetExample)
        .where(DatasetExample.dataset_version_id == version_id)
        .order_by(DatasetExample.position)
        .execution_options(yield_per=batch)
    )
    for row in session.scalars(query):
        yield example_of(row)


def iter_heldout(session: Session, version_id: int, *, batch: int = 1000) -> Iterator[str]:
    """A version's held-out texts in order, fetched ``batch`` at a time."""
    query = (
        select(HeldoutText.text)
        .where(HeldoutText.dataset_version_id == version_id)
        .order_by(HeldoutText.position)
        .execution_options(yield_per=batch)
    )
    yield from session.scalars(query)


def heldout_of(session: Session, version_id: int) -> list[str]:
    """A version's held-out texts in order."""
    return list(
        session.scalars(
            select(HeldoutText.text)
            .where(HeldoutText.dataset_version_id == version_id)
            .order_by(HeldoutText.position)
        )
    )


def examples_by_version(
    session: Session, version_ids: Iterable[int]
) -> dict[int, list[DatasetExample]]:
    """The example rows of several versions at once (one query), in order."""
    ids = set(version_ids)
    out: dict[int, list[DatasetExample]] = {version_id: [] for version_id in ids}
    if ids:
        for row in session.scalars(
            select(DatasetExample)
            .where(DatasetExample.dataset_version_id.in_(ids))
            .order_by(DatasetExample.dataset_version_id, DatasetExample.position)
        ):
            out[row.dataset_version_id].append(row)
    return out


def examples_by_key(
    session: Session, version_id: int, keys: Iterable[str]
) -> dict[str, DatasetExample]:
    """Some example rows of a version by key (one query on the (version, key) unique index)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.scalars(
        select(DatasetExample).where(
            DatasetExample.dataset_version_id == version_id,
            DatasetExample.example_key.in_(wanted),
        )
    )
    return {row.example_key: row for row in rows}
