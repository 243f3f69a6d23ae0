"""Which waiting evaluations run together as one sweep group (see :mod:`service.engine.sweep`).

Evaluations share batches when they have one base model, dataset version and generation
config (:func:`group_key`) and are LoRA candidates or the base itself; a full fine-tune runs
alone. The same weights twice in one group would both be generated, so a repeat is held back
in a group of its own, run after the rest, where it reuses the first one's outputs (as two
submissions of one checkpoint do when they run one after the other).

Three questions, one query (:func:`_grouping_rows`) and one partition (:func:`_partition`):
:func:`groups` splits what an in-process worker found waiting, :func:`siblings` finds what
may run with the evaluation a queue message names, and :func:`joiners` finds what arrived
since a group started and may still join it before it generates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Candidate, Evaluation
from service.db.session import unit_of_work
from service.engine import lease

#: Candidate kinds whose evaluations can share batches (a full fine-tune has its own weights).
SHARING_KINDS = ("base", "lora")


def group_key(kind: str, base_model: str, dataset_version_id: int, config: Any) -> str | None:
    """Evaluations with the same key can share batches; full fine-tunes share with none."""
    if kind not in SHARING_KINDS:
        return None
    blob = json.dumps(config or {}, sort_keys=True, default=str)
    return f"{base_model}\x00{dataset_version_id}\x00{blob}"


def weights_identity(kind: str, base_model: str, digests: dict[str, str] | None) -> str:
    """The same weights submitted twice have one identity (their files' digests)."""
    return json.dumps([kind, base_model, digests or {}], sort_keys=True)


def _grouping_rows(session: Session, *where: Any) -> list[Any]:
    """(id, kind, base model, dataset version, config, digests) of the evaluations matching
    ``where``, oldest first: what :func:`group_key` and :func:`weights_identity` read."""
    return list(
        session.execute(
            select(
                Evaluation.id,
                Candidate.kind,
                Candidate.base_model,
                Evaluation.dataset_version_id,
                Evaluation.config,
                Candidate.digests,
            )
            .join(Candidate, Candidate.id == Evaluation.candidate_id)
            .where(*where)
            .order_by(Evaluation.created_at, Evaluation.id)
        ).all()
    )


def _partition(ids: Sequence[int], rows: Sequence[Any], size: int) -> list[list[int]]:
    """``ids`` in groups of at most ``size`` sharing a :func:`group_key`, in the order of their
    first member; the same weights twice in one group go to groups of their own, last."""
    keys = {row[0]: group_key(row[1], row[2], row[3], row[4]) for row in rows}
    identities = {row[0]: weights_identity(row[1], row[2], row[5]) for row in rows}
    out: list[list[int]] = []
    repeats: list[list[int]] = []
    open_groups: dict[str, list[int]] = {}
    seen: dict[str, set[str]] = {}
    for evaluation_id in ids:
        key = keys.get(evaluation_id)
        identity = identities.get(evaluation_id, "")
        if key is not None and identity in seen.get(key, set()):
            repeats.append([evaluation_id])
            continue
        group = open_groups.get(key) if key is not None else None
        if group is None or len(group) >= size:
            group = [evaluation_id]
            out.append(group)
            if key is not None:
                open_groups[key] = group
                seen[key] = set()
        else:
            group.append(evaluation_id)
        if key is not None:
            seen[key].add(identity)
    return out + repeats


def groups(factory: sessionmaker[Session], ids: Sequence[int], size: int) -> list[list[int]]:
    """``ids`` (claimable evaluations, oldest first) in groups that can run together, at most
    ``size`` each, in the order of their oldest member."""
    if size <= 1 or len(ids) <= 1:
        return [[i] for i in ids]
    with unit_of_work(factory, write=False) as session:
        rows = _grouping_rows(session, Evaluation.id.in_(ids))
    return _partition(ids, rows, size)


def _peers(session: Session, evaluation_ids: Sequence[int], size: int) -> list[int]:
    """The claimable evaluations that may run in one group with ``evaluation_ids`` (the first
    of them decides the key), in the order they would join; [] when none can share."""
    own = _grouping_rows(session, Evaluation.id.in_(evaluation_ids))
    by_id = {row[0]: row for row in own}
    first = by_id.get(evaluation_ids[0])
    if first is None or group_key(*first[1:5]) is None or len(evaluation_ids) >= size:
        return []
    others = _grouping_rows(
        session,
        lease.claimable(utcnow()),
        Evaluation.id.not_in(evaluation_ids),
        Evaluation.dataset_version_id == first[3],
        Candidate.base_model == first[2],
        Candidate.kind.in_(SHARING_KINDS),
    )
    ordered = [by_id[i] for i in evaluation_ids if i in by_id] + others
    group = _partition([row[0] for row in ordered], ordered, size)[0]
    members = set(evaluation_ids)
    return [i for i in group if i not in members]


def siblings(factory: sessionmaker[Session], evaluation_id: int, size: int) -> list[int]:
    """Claimable evaluations that can run in one group with ``evaluation_id`` (itself first)."""
    if size <= 1:
        return [evaluation_id]
    with unit_of_work(factory, write=False) as session:
        return [evaluation_id, *_peers(session, [evaluation_id], size)]


def joiners(factory: sessionmaker[Session], member_ids: Sequence[int], size: int) -> list[int]:
    """Claimable evaluations that may join a running group of ``member_ids`` (its first
    member decides the key; repeats of a member's weights are left out), at most
    ``size - len(member_ids)``, oldest first."""
    if not member_ids or len(member_ids) >= size:
        return []
    with unit_of_work(factory, write=False) as session:
        return _peers(session, member_ids, size)


def newest_arrival(factory: sessionmaker[Session], evaluation_ids: Sequence[int]) -> datetime:
    """When the newest of ``evaluation_ids`` was queued (UTC)."""
    with unit_of_work(factory, write=False) as session:
        newest = session.scalar(
            select(func.max(Evaluation.created_at)).where(Evaluation.id.in_(evaluation_ids))
        )
    if newest is None:
        return utcnow()
    if newest.tzinfo is None:  # SQLite keeps no zone; every timestamp here is UTC
        newest = newest.replace(tzinfo=UTC)
    return newest
