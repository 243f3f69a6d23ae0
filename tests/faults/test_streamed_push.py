"""Dataset pushes are read as a stream, line by line, under their own limit.

The general body limit is squeezed to 64 KiB here: a push six times that size
is stored whole (the same content-addressed version as in memory), a bad line deep
in a long push is refused by its number, and a refused push stores nothing and
leaves no spool file — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.api.app import create_app
from service.archives import SCRATCH
from service.dataset_format import parse_dataset
from service.settings import Settings

Headers = dict[str, str]
BODY_LIMIT = 64 * 1024
LINES = 6_000
NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def stream_client(settings: Settings) -> Iterator[TestClient]:
    squeezed = settings.model_copy(
        update={"max_body_bytes": BODY_LIMIT, "max_dataset_line_bytes": 4096}
    )
    with TestClient(create_app(squeezed, migrate=False)) as c:
        yield c


@pytest.fixture
def headers(stream_client: TestClient, settings: Settings) -> Headers:
    return {"Authorization": f"Bearer {settings.admin_token_file.read_text().strip()}"}


def _lines(n: int = LINES) -> list[bytes]:
    lines = [json.dumps({"generation": {"max_new_tokens": 16}}).encode()]
    for i in range(1, n):
        record = {"id": f"q{i}", "input": f"Question {i}?", "reference": str(i)}
        if i % 500 == 0:
            record["domain"] = "out"
        lines.append(json.dumps(record).encode())
    lines.insert(n // 2, json.dumps({"heldout": "Text between the examples."}).encode())
    return lines


def _chunked(lines: list[bytes]) -> Iterator[bytes]:
    for start in range(0, len(lines), 700):  # no Content-Length: chunked transfer
        yield b"\n".join(lines[start : start + 700]) + b"\n"


def _spool_files(settings: Settings) -> list[Path]:
    scratch = settings.resolved_data_dir / "uploads" / SCRATCH
    return list(scratch.iterdir()) if scratch.is_dir() else []


def test_a_push_beyond_the_body_limit_is_streamed_and_stored_whole(
    stream_client: TestClient, headers: Headers, settings: Settings
) -> None:
    lines = _lines()
    body = b"\n".join(lines) + b"\n"
    assert len(body) > 5 * BODY_LIMIT
    expected = parse_dataset(body)

    pushed = stream_client.post(
        "/v1/datasets/long/versions", content=_chunked(lines), headers={**headers, **NDJSON}
    )
    assert pushed.status_code == 201, pushed.text
    version = pushed.json()
    assert version["digest"] == expected.digest  # content addressing unchanged
    assert (version["n_examples"], version["n_out_domain"], version["n_heldout"]) == (
        LINES - 1,
        (LINES - 1) // 500,
        1,
    )
    jsonl = stream_client.get("/v1/datasets/long/versions/1/jsonl", headers=headers).content
    assert hashlib.sha256(jsonl).hexdigest() == expected.digest
    page = stream_client.get(
        "/v1/datasets/long/versions/1/examples",
        params={"offset": LINES - 3, "limit": 5},
        headers=headers,
    ).json()
    assert [item["id"] for item in page["items"]] == [f"q{LINES - 2}", f"q{LINES - 1}"]

    again = stream_client.post(
        "/v1/datasets/long/versions",
        files={"file": ("eval.jsonl", body, "application/x-ndjson")},  # multipart, same content
        headers=headers,
    )
    assert (again.status_code, again.json()["version"]) == (200, 1)
    assert _spool_files(settings) == []


@pytest.mark.parametrize(
    ("line", "bad", "detail"),
    [
        (5_876, b'{"input": "broken"', "line 5876: not valid JSON: Expecting ',' delimiter"),
        (
            5_500,
            b'{"id": "q17", "input": "again"}',
            'line 5500: duplicate id "q17" (first used on line 18)',
        ),
        (
            4_000,
            b'{"input": "' + b"x" * 5000 + b'"}',
            "line 4000: longer than the limit of 4096 bytes (TUNEGATE_MAX_DATASET_LINE_BYTES)",
        ),
        (
            3_000,
            b'{"input": "q", "x": ' + b"[" * 100 + b"]" * 100 + b"}",
            "line 3000: JSON nested deeper than 64 levels is refused",
        ),
    ],
)
def test_a_bad_line_deep_in_a_stream_is_refused_by_number_and_nothing_stays(
    stream_client: TestClient,
    headers: Headers,
    settings: Settings,
    line: int,
    bad: bytes,
    detail: str,
) -> None:
    lines = _lines()
    lines[line - 1] = bad
    response = stream_client.post(
        "/v1/datasets/broken/versions", content=_chunked(lines), headers={**headers, **NDJSON}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "InvalidDataset"
    assert response.json()["detail"].startswith(detail), response.json()["detail"]
    assert stream_client.get("/v1/datasets/broken", headers=headers).status_code == 404
    assert _spool_files(settings) == []
    assert stream_client.get("/readyz").status_code == 200


def test_the_token_and_name_are_checked(stream_client: TestClient, headers: Headers) -> None:
    body = b'{"input": "a"}\n'
    anonymous = stream_client.post("/v1/datasets/x/versions", content=body, headers=NDJSON)
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "NotAuthenticated")
    bad_name = stream_client.post(
        "/v1/datasets/-x y/versions", content=body, headers={**headers, **NDJSON}
    )
    assert (bad_name.status_code, bad_name.json()["error"]) == (422, "ValidationError")
    assert stream_client.get("/v1/datasets", headers=headers).json() == []


def test_a_push_never_holds_two_connections(stream_client: TestClient, headers: Headers) -> None:
    """The token is checked (and its connection given back) before the body is read;
    the unit of work takes one again to store the version: one at a time."""
    engine = stream_client.app.state.engine  # type: ignore[attr-defined]
    held, peak, checkouts = [0], [0], [0]

    @event.listens_for(engine, "checkout")
    def _out(*_: Any) -> None:
        if not threading.current_thread().name.startswith("tunegate-"):  # not background
            held[0] += 1
            checkouts[0] += 1
            peak[0] = max(peak[0], held[0])

    @event.listens_for(engine, "checkin")
    def _in(*_: Any) -> None:
        if not threading.current_thread().name.startswith("tunegate-"):
            held[0] -= 1

    lines = _lines(2000)
    pushed = stream_client.post(
        "/v1/datasets/one/versions", content=_chunked(lines), headers={**headers, **NDJSON}
    )
    assert pushed.status_code == 201
    assert (peak[0], checkouts[0]) == (1, 2)
