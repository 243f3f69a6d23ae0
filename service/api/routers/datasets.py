"""Routes for datasets: push JSONL versions (read as a stream), read versions, examples, JSONL."""

from __future__ import annotations

import functools
import os
import pathlib
import re
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse

from service import datasets
from service.api.deps import (
    OffsetQuery,
    ReadToken,
    SessionDep,
    SettingsDep,
    SubmitCheck,
    SubmitToken,
    authorize_now,
)
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.common import NAME_PATTERN
from service.api.schemas.datasets import (
    DatasetOut,
    ExampleOut,
    ExamplePage,
    PushedVersionOut,
    VersionOut,
)
from service.archives import SCRATCH
from service.dataset_spool import DatasetSpool
from service.errors import InvalidDataset
from service.queries import examples

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=UnitOfWorkRoute)

JSONL_MEDIA_TYPE = "application/x-ndjson"


#: The dataset push: read as a stream under its own body limit (see ``create_app``).
PUSH_PATH = re.compile(r"/v1/datasets/[^/]+/versions")
_CHUNK = 1024**2  # bytes handed to the parser per thread hop
PushName = Annotated[str, Path(pattern=NAME_PATTERN)]


async def _jsonl_chunks(request: Request) -> AsyncGenerator[bytes]:
    """The pushed JSONL in chunks of about 1 MiB: the raw body as it arrives, or the
    ``file`` field of a multipart form (spooled to disk by the form parser)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form() as form:
            upload = form.get("file")
            if isinstance(upload, UploadFile):
                while chunk := await upload.read(_CHUNK):
                    yield chunk
            elif isinstance(upload, str):  # a plain form field (curl -F 'file=<eval.jsonl')
                yield upload.encode("utf-8")
            else:
                raise InvalidDataset('a multipart push needs the JSONL in a "file" field')
        return
    pending = bytearray()
    async for chunk in request.stream():
        pending += chunk
        if len(pending) >= _CHUNK:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


async def streamed_push(
    request: Request, name: PushName, token: SubmitCheck, settings: SettingsDep
) -> AsyncIterator[DatasetSpool]:
    """The push validated and spooled to disk while it streams in, line by line.

    ``name`` and the token are checked before the first byte is read; each chunk is
    parsed on a worker thread (never on the event loop); a bad line ends the read
    with 422 naming it. The spool file is deleted when the route is done.
    """
    await anyio.to_thread.run_sync(authorize_now, token)
    spool = await anyio.to_thread.run_sync(
        functools.partial(
            DatasetSpool,
            settings.uploads_dir / SCRATCH,
            max_line_bytes=settings.max_dataset_line_bytes,
            max_depth=settings.max_json_depth,
        )
    )
    try:
        try:
            async with aclosing(_jsonl_chunks(request)) as chunks:
                async for chunk in chunks:
                    await anyio.to_thread.run_sync(spool.feed, chunk)
        except ClientDisconnect as exc:  # e.g. the CLI found a bad table row while sending
            raise InvalidDataset("the push was cut off: the client left before its end") from exc
        yield await anyio.to_thread.run_sync(spool.finish)
    finally:
        spool.close()


@router.post(
    "/{name}/versions",
    summary="Push a JSONL file as a new version (or get the version holding the same content)",
    status_code=201,
    responses={200: {"model": PushedVersionOut, "description": "content already stored"}},
)
def push_version(
    name: PushName,
    pushed: Annotated[DatasetSpool, Depends(streamed_push, scope="function")],
    response: Response,
    session: SessionDep,
    _: SubmitToken,
) -> PushedVersionOut:
    result = datasets.push_version(session, name, pushed)
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
def get_jsonl(
    name: str, version: str, session: SessionDep, settings: SettingsDep, _: ReadToken
) -> Response:
    found = datasets.get_version(session, name, datasets.parse_version_ref(version))
    # Written to a scratch file in the unit of work, a batch of rows at a time, then sent
    # from disk: a gigabyte version never sits in memory (the file goes once it is sent;
    # the uploads sweep takes one a dropped connection left behind).
    scratch = settings.uploads_dir / SCRATCH
    scratch.mkdir(parents=True, exist_ok=True)
    handle, spooled = tempfile.mkstemp(prefix="jsonl-", suffix=".jsonl", dir=scratch)
    path = pathlib.Path(spooled)
    try:
        with os.fdopen(handle, "wb") as out:
            datasets.write_version_jsonl(session, found, out)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=JSONL_MEDIA_TYPE,
        headers={"ETag": f'"{found.digest}"'},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
