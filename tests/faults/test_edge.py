"""Hostile input at the edge: each refused with the right 4xx and a clear message.

Body size (413 naming the limit, before or while streaming), deep JSON, NUL in
JSON strings and in query strings, huge ids and offsets, non-finite numbers —
on SQLite and PostgreSQL, and the server stays ready after each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.limits import JsonDepth, json_depth_ok
from service.settings import Settings
from tests.checkpoint_files import api_family

Headers = dict[str, str]
LIMIT = 64 * 1024


@pytest.fixture
def small_client(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"max_body_bytes": LIMIT})
    with TestClient(create_app(limited, migrate=False)) as c:
        yield c


@pytest.fixture
def small_auth(small_client: TestClient, settings: Settings) -> Headers:
    return {"Authorization": f"Bearer {settings.admin_token_file.read_text().strip()}"}


def _ready(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200


def test_json_depth_scanner_understands_strings() -> None:
    assert json_depth_ok(b'{"a": "[[[[[[[[[[[[[["}', 3)
    assert not json_depth_ok(b"[" * 5 + b"]" * 5, 4)
    scan = JsonDepth(10)
    assert scan.feed(b'{"a": "\\u00') and not scan.feed(b'00"}')  # split across chunks
    assert scan.has_nul
    assert json_depth_ok(b'{"a": "\\\\u0000"}', 10)  # an escaped backslash, then text


def test_declared_oversize_body_is_413_naming_the_limit(
    small_client: TestClient, small_auth: Headers
) -> None:
    response = small_client.post(
        "/v1/datasets/big/versions",
        content=b'{"input": "x"}\n' * (LIMIT // 10),
        headers={**small_auth, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "BodyTooLarge"
    assert str(LIMIT) in response.json()["detail"]
    assert small_client.get("/v1/datasets/big", headers=small_auth).status_code == 404
    _ready(small_client)


def test_streamed_oversize_body_is_413(small_client: TestClient, small_auth: Headers) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(LIMIT // 1000 + 5):
            yield b'{"input": "' + b"y" * 980 + b'"}\n'

    response = small_client.post(
        "/v1/datasets/streamed/versions",
        content=chunks(),
        headers={**small_auth, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 413, response.text
    assert small_client.get("/v1/datasets/streamed", headers=small_auth).status_code == 404
    _ready(small_client)


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_json_is_422(client: TestClient, auth: Headers, depth: int) -> None:
    deep = '{"input": "q", "extra": ' + "[" * depth + "]" * depth + "}"
    response = client.post(
        "/v1/datasets/deep/versions",
        content=deep.encode(),
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 422
    assert "nested deeper than 64" in response.json()["detail"]
    body = {"name": "fam", "base_model": "smollm2-135m-instruct", "x": json.loads(
        "[" * 70 + "]" * 70
    )}
    response = client.post("/v1/families", json=body, headers=auth)
    assert response.status_code == 422
    _ready(client)


def test_nul_in_json_and_query_is_422(client: TestClient, auth: Headers) -> None:
    api_family(client, auth)
    response = client.post(
        "/v1/families", json={"name": "ok", "base_model": "a\x00b"}, headers=auth
    )
    assert response.status_code == 422
    assert "NUL" in response.json()["detail"]
    response = client.get("/v1/candidates", params={"sweep": "w\x00"}, headers=auth)
    assert response.status_code == 422
    assert "control characters" in response.json()["detail"]
    _ready(client)
