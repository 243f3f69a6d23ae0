"""Routes for datasets: push JSONL versions, read versions, examples and canonical JSONL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.datastructures import UploadFile

from service import datasets
from service.api.deps import OffsetQuery, ReadToken, SessionDep, SubmitToken
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.common import NAME_PATTERN
from service.api.schemas.datasets import (
    DatasetOut,
    ExampleOut,
    ExamplePage,
    PushedVersionOut,
    VersionOut,
)
from service.errors import InvalidDataset
from service.queries import examples

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=UnitOfWorkRoute)

JSONL_MEDIA_TYPE = "application/x-ndjson"


async def jsonl_body(request: Request) -> bytes:
    """The pushed JSONL: the raw body, or the ``file`` field of a multipart form."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return await request.body()
    async with request.form() as form:
        upload = form.get("file")
        if isinstance(upload, UploadFile):
            return await upload.read()
        if isinstance(upload, str):  # a plain form field (curl -F 'file=<eval.jsonl')
            return upload.encode("utf-8")
        raise InvalidDataset('a multipart push needs the JSONL in a "file" field')


@router.post(
    "/{name}/versions",
    summary="Push a JSONL file as a new version (or get the version holding the same content)",
    status_code=201,
    responses={200: {"model": PushedVersionOut, "description": "content already stored"}},
)
def push_version(
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    body: Annotated[bytes, Depends(jsonl_body)],
    response: Response,
    session: SessionDep,
    _: SubmitToken,
) -> PushedVersionOut:
    result = datasets.push_version(session, name, body)
    if not result.created:
        response.status_code = 200
    return PushedVersionOut.pushed(result.version, created=result.created)


@router.get("", summary="Every dataset with its latest version")
def list_datasets(session: SessionDep, _: ReadToken) -> list[DatasetOut]:
    return [DatasetOut.of(summary) for summary in datasets.list_datasets(session)]


@router.get("/{name}", summary="One dataset")
def get_dataset(name: str, session: SessionDep, _: ReadToken) -> DatasetOut:
    return DatasetOut.of(datasets.summarize(session, name))


@router.get("/{name}/versions", summary="A dataset's versions, oldest first")
def list_versions(name: str, session: SessionDep, _: ReadToken) -> list[VersionOut]:
    return [VersionOut.of(v) for v in datasets.list_versions(session, name)]


@router.get("/{name}/versions/{version}", summary="One version (a number or 'latest')")
def get_version(name: str, version: str, session: SessionDep, _: ReadToken) -> VersionOut:
    ref = datasets.parse_version_ref(version)
    return VersionOut.of(datasets.get_version(session, name, ref))


@router.get("/{name}/versions/{version}/examples", summary="A page of a version's examples")
def list_examples(
    name: str,
    version: str,
    session: SessionDep,
    _: ReadToken,
    offset: OffsetQuery = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ExamplePage:
    found = datasets.get_version(session, name, datasets.parse_version_ref(version))
    rows = examples.example_rows(session, found.id, offset=offset, limit=limit)
    return ExamplePage(
        items=[ExampleOut.of(row) for row in rows],
        total=found.n_examples,
        offset=offset,
        limit=limit,
    )


@router.get(
    "/{name}/versions/{version}/jsonl",
    summary="A version's canonical JSONL (its sha256 is the digest)",
    response_class=Response,
    responses={200: {"content": {JSONL_MEDIA_TYPE: {}}}},
)
def get_jsonl(name: str, version: str, session: SessionDep, _: ReadToken) -> Response:
    found = datasets.get_version(session, name, datasets.parse_version_ref(version))
    return Response(
        datasets.version_jsonl(session, found).encode("utf-8"),
        media_type=JSONL_MEDIA_TYPE,
        headers={"ETag": f'"{found.digest}"'},
    )
