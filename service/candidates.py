"""Candidates: registering a checkpoint (by path or upload) idempotently, and finding them.

A candidate is stored only after its folder passed
:func:`~service.checkpoints.inspect_checkpoint`; its per-file sha256 digests are
stored with it. Registration can also queue the candidate's evaluation in the
same unit of work, so one retried request returns one candidate and one evaluation.

Idempotency: a request may carry a key. The key and a sha256 of the canonical
request are stored on the row (unique key). A later request with the same key
and digest is a *replay*: it returns the first candidate (and its first
evaluation) and stores nothing; the same key with another digest is refused
with ``IdempotencyKeyReused``. Two concurrent first attempts race on the unique
index; the loser rolls its unit of work back and answers as a replay.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.archives import (
    INCOMING,
    archive_format,
    keep,
    remove_scratch,
    spool,
    unpack_scratch,
)
from service.checkpoint_paths import expand_home
from service.checkpoints import CheckpointInfo, CheckpointKind, inspect_checkpoint
from service.db.models import Candidate, Evaluation
from service.db.session import release, savepoint
from service.errors import (
    CandidateNotFound,
    CheckpointRejected,
    IdempotencyKeyReused,
    InvalidRequest,
)
from service.evaluation_commands import create_evaluation
from service.evaluations import resolve_dataset
from service.families import get_family
from service.jsontypes import JSONObject
from service.settings import Settings
from service.traininglog import diagnose, parse_training_log


@dataclass(frozen=True)
class TrainingLogText:
    """A training log as sent: ``trainer_state.json`` or step JSONL, with its file name."""

    text: str
    filename: str | None = None


@dataclass(frozen=True)
class CandidateSpec:
    """What a caller says about a candidate; the checkpoint folder is located separately."""

    family: str
    learning_rate: float
    kind: CheckpointKind | None = None
    sweep: str | None = None
    training_run: str | None = None
    name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    training_log: TrainingLogText | None = None
    evaluate_on: str | None = None  # "name[@version]": queue an evaluation with the candidate


@dataclass(frozen=True)
class Idempotency:
    key: str
    request_digest: str


@dataclass(frozen=True)
class Submission:
    """The outcome of a registration: ``replayed`` when an earlier request created it."""

    candidate: Candidate
    evaluation: Evaluation | None
    queued_ids: list[int]
    replayed: bool


def request_digest(payload: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a request (sorted keys, no whitespace)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def checkpoint_digest(digests: Mapping[str, str]) -> str:
    """One sha256 over every file's relative path and digest (as ``CheckpointInfo.digest``)."""
    h = hashlib.sha256()
    for rel in sorted(digests):
        h.update(f"{rel}\0{digests[rel]}\n".encode())
    return h.hexdigest()


def find_replay(session: Session, idempotency: Idempotency | None) -> Candidate | None:
    """The candidate an earlier request with this key created, or ``None``.

    Raises ``IdempotencyKeyReused`` when that request had another body.
    """
    if idempotency is None:
        return None
    candidate = session.scalar(
        select(Candidate).where(Candidate.idempotency_key == idempotency.key)
    )
    if candidate is not None and candidate.request_digest != idempotency.request_digest:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {idempotency.key!r} was already used for another request "
            f"(candidate {candidate.id}); use a new key for a new request"
        )
    return candidate


def _replay(session: Session, candidate: Candidate, spec: CandidateSpec) -> Submission:
    evaluation = None
    if spec.evaluate_on is not None:
        evaluation = session.scalar(
            select(Evaluation)
            .where(Evaluation.candidate_id == candidate.id)
            .order_by(Evaluation.id)
            .limit(1)
        )
    return Submission(candidate, evaluation, [], replayed=True)


def _read_training_log(log: TrainingLogText) -> tuple[list[JSONObject], JSONObject]:
    """Parse and diagnose a training log; raises ``InvalidTrainingLog``."""
    points = parse_training_log(log.text, log.filename)
    return [p.to_dict() for p in points], asdict(diagnose(points))


def submit_candidate(
    session: Session,
    settings: Settings,
    spec: CandidateSpec,
    locate: Callable[[], Path],
    *,
    source: str,
    idempotency: Idempotency | None = None,
    accept: Callable[[CheckpointInfo], CheckpointInfo] | None = None,
) -> Submission:
    """Register a candidate (and queue its evaluation when ``spec.evaluate_on`` is set).

    ``locate`` returns the checkpoint folder; it is called only when the request
    is not a replay (an upload is unpacked only then). The folder is validated
    under the allowed checkpoint roots plus the uploads folder. ``queued_ids``
    lists the evaluations to hand to the dispatcher *after* the unit of work
    commits. On a lost idempotency race the insert rolls back to a savepoint and
    the winner's answer is replayed. Raises ``FamilyNotFound``, ``CheckpointRejected``,
    ``DatasetVersionNotFound``, ``InvalidTrainingLog``, ``IdempotencyKeyReused``.
    """
    replay = find_replay(session, idempotency)
    if replay is not None:
        return _replay(session, replay, spec)
    family = get_family(session, spec.family)
    if spec.evaluate_on is not None:
        resolve_dataset(session, spec.evaluate_on)  # fail fast, before reading the checkpoint
    roots: Sequence[Path] = [*settings.allowed_checkpoint_roots, settings.uploads_dir]
    release(session)  # unpacking and hashing hold no connection and no write lock
    info = inspect_checkpoint(locate(), roots, kind=spec.kind)
    points: list[JSONObject] | None = None
    diagnosis: JSONObject | None = None
    if spec.training_log is not None:
        points, diagnosis = _read_training_log(spec.training_log)
    if accept is not None:  # e.g. move an accepted upload out of its scratch folder
        info = accept(info)
    candidate = Candidate(
        family_id=family.id,
        name=spec.name,
        kind=info.kind,
        source=source,
        checkpoint_path=str(info.path),
        base_model=family.base_model,
        learning_rate=spec.learning_rate,
        sweep=spec.sweep,
        training_run=spec.training_run,
        tags=dict(spec.tags),
        digests=dict(info.digests),
        training_log=points,
        diagnosis=diagnosis,
        idempotency_key=idempotency.key if idempotency else None,
        request_digest=idempotency.request_digest if idempotency else None,
    )
    try:
        with savepoint(session):
            session.add(candidate)
            session.flush()
    except IntegrityError:
        winner = find_replay(session, idempotency)
        if winner is None:
            raise
        return _replay(session, winner, spec)
    if spec.evaluate_on is None:
        return Submission(candidate, None, [], replayed=False)
    evaluation, queued = create_evaluation(session, settings, candidate, spec.evaluate_on)
    return Submission(candidate, evaluation, queued, replayed=False)


def get_candidate(session: Session, candidate_id: int) -> Candidate:
    """The candidate with this id; raises ``CandidateNotFound``."""
    candidate = session.get(Candidate, candidate_id)
    if candidate is None:
        raise CandidateNotFound(f"candidate {candidate_id} does not exist")
    return candidate


def list_candidates(
    session: Session,
    *,
    family: str | None = None,
    sweep: str | None = None,
    kind: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> list[Candidate]:
    """Candidates matching every given filter.

    Within a sweep they are ordered by learning rate (then id), so a sweep reads
    as a curve; otherwise newest first. Raises ``FamilyNotFound`` for an unknown family.
    """
    query = select(Candidate)
    if family is not None:
        query = query.where(Candidate.family_id == get_family(session, family).id)
    if sweep is not None:
        query = query.where(Candidate.sweep == sweep)
    if kind is not None:
        if kind not in ("base", "lora", "full"):
            raise InvalidRequest(f"unknown kind {kind!r}; kinds are base, lora, full")
        query = query.where(Candidate.kind == kind)
    if sweep is not None:
        query = query.order_by(Candidate.learning_rate, Candidate.id)
    else:
        query = query.order_by(Candidate.id.desc())
    return list(session.scalars(query.offset(offset).limit(limit)))


def checkpoint_from_path(raw: str) -> Path:
    """A checkpoint path as sent; it must be absolute on the server (``~`` is expanded)."""
    path = expand_home(raw, "checkpoint path")
    if not path.is_absolute():
        raise CheckpointRejected(
            f"checkpoint path {raw!r} is relative; send an absolute path on the server"
        )
    return path


@dataclass(frozen=True)
class Upload:
    """An uploaded archive: a readable binary stream and the name it was sent with."""

    stream: BinaryIO
    filename: str


def submit_upload(
    session: Session,
    settings: Settings,
    spec: CandidateSpec,
    upload: Upload,
    *,
    request: Mapping[str, Any],
    idempotency_key: str | None = None,
) -> Submission:
    """Register a candidate from an uploaded archive (see :mod:`service.archives`).

    The archive is spooled (at most ``settings.max_upload_bytes``) and hashed; the
    idempotency digest covers ``request`` plus the archive's sha256, and the
    archive is unpacked under ``settings.uploads_dir/<sha256>/`` only when the
    request is not a replay. Raises what :func:`submit_candidate` raises.
    """
    fmt = archive_format(upload.filename)
    uploads = settings.uploads_dir
    incoming = uploads / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=incoming, suffix=".archive")
    os.close(fd)
    spooled = Path(name)
    unpacked: list[Path] = []

    def locate() -> Path:
        unpacked.append(unpack_scratch(spooled, fmt, uploads, settings.max_upload_bytes))
        return unpacked[-1]

    def accept(info: CheckpointInfo) -> CheckpointInfo:
        return replace(info, path=keep(unpacked[-1], uploads, sha).resolve())

    try:
        sha = spool(upload.stream, spooled, settings.max_upload_bytes)
        idempotency = None
        if idempotency_key is not None:
            digest = request_digest({**request, "archive_sha256": sha})
            idempotency = Idempotency(idempotency_key, digest)
        return submit_candidate(
            session,
            settings,
            spec,
            locate,
            source="upload",
            idempotency=idempotency,
            accept=accept,
        )
    finally:  # whatever was refused or failed leaves nothing on disk
        spooled.unlink(missing_ok=True)
        for folder in unpacked:
            remove_scratch(folder, uploads)
