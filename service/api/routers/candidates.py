"""Routes for candidates: register (by path or upload, idempotently), list, read.

Idempotency: with an ``Idempotency-Key`` header, a retried request with the same
body answers exactly as the first did — the same status code (201), the same
candidate and evaluation ids — plus ``Idempotent-Replayed: true``, and stores
nothing new. The same key with another body is refused with 409
``IdempotencyKeyReused``.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    File,
    Form,
    Header,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service import candidates
from service.api.deps import IdPath, OffsetQuery, ReadToken, SessionDep, SettingsDep, SubmitToken
from service.api.routers.evaluations import enqueue_after_commit
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.candidates import (
    CandidateCreate,
    CandidateDetail,
    CandidateMetadata,
    CandidateOut,
    CandidateSubmitted,
)
from service.candidates import Idempotency, Submission, TrainingLogText, Upload
from service.errors import InvalidTrainingLog

router = APIRouter(prefix="/v1/candidates", tags=["candidates"], route_class=UnitOfWorkRoute)

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]
MAX_TRAINING_LOG_BYTES = 64 * 1024 * 1024


def _answer(
    submission: Submission,
    session: SessionDep,
    request: Request,
    response: Response,
    background: BackgroundTasks,
) -> CandidateSubmitted:
    enqueue_after_commit(request, background, submission.queued_ids)
    if submission.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return CandidateSubmitted.of_submission(submission)


@router.post("", status_code=201, summary="Register a checkpoint folder by path")
def create_candidate(
    body: CandidateCreate,
    session: SessionDep,
    settings: SettingsDep,
    _: SubmitToken,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    idempotency_key: IdempotencyKey = None,
) -> CandidateSubmitted:
    idempotency = None
    if idempotency_key is not None:
        payload = {"source": "path", **body.model_dump(mode="json")}
        idempotency = Idempotency(idempotency_key, candidates.request_digest(payload))
    submission = candidates.submit_candidate(
        session,
        settings,
        body.spec(body.log()),
        lambda: candidates.checkpoint_from_path(body.checkpoint),
        source="path",
        idempotency=idempotency,
    )
    return _answer(submission, session, request, response, background)


def _parse_metadata(text: str) -> CandidateMetadata:
    try:
        return CandidateMetadata.model_validate_json(text)
    except ValidationError as exc:
        errors = [{**e, "loc": ("metadata", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def _read_log(upload: UploadFile | None) -> tuple[TrainingLogText | None, str | None]:
    """The uploaded training log as text, and its sha256 (for the idempotency digest)."""
    if upload is None:
        return None, None
    data = upload.file.read(MAX_TRAINING_LOG_BYTES + 1)
    if len(data) > MAX_TRAINING_LOG_BYTES:
        raise InvalidTrainingLog(f"training log is larger than {MAX_TRAINING_LOG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTrainingLog(f"training log is not UTF-8 text: {exc}") from exc
    return TrainingLogText(text, upload.filename), hashlib.sha256(data).hexdigest()


@router.post("/upload", status_code=201, summary="Register an uploaded checkpoint archive")
def upload_candidate(
    archive: Annotated[UploadFile, File(description=".tar.gz, .tgz, .tar or .zip")],
    metadata: Annotated[str, Form(description="JSON: the candidate fields minus checkpoint")],
    session: SessionDep,
    settings: SettingsDep,
    _: SubmitToken,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    training_log: Annotated[UploadFile | None, File()] = None,
    idempotency_key: IdempotencyKey = None,
) -> CandidateSubmitted:
    meta = _parse_metadata(metadata)
    log, log_sha = _read_log(training_log)
    submission = candidates.submit_upload(
        session,
        settings,
        meta.spec(log),
        Upload(archive.file, archive.filename or ""),
        request={"source": "upload", **meta.model_dump(mode="json"), "training_log": log_sha},
        idempotency_key=idempotency_key,
    )
    return _answer(submission, session, request, response, background)


@router.get("", summary="List candidates (a sweep is ordered by learning rate)")
def list_candidates(
    session: SessionDep,
    _: ReadToken,
    family: str | None = None,
    sweep: str | None = None,
    kind: str | None = None,
    offset: OffsetQuery = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[CandidateOut]:
    rows = candidates.list_candidates(
        session, family=family, sweep=sweep, kind=kind, offset=offset, limit=limit
    )
    return [CandidateOut.of(row) for row in rows]


@router.get("/{candidate_id}", summary="One candidate with digests and training log")
def get_candidate(candidate_id: IdPath, session: SessionDep, _: ReadToken) -> CandidateDetail:
    return CandidateDetail.of(candidates.get_candidate(session, candidate_id))
