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
DATASET_LIMIT = 4 * LIMIT  # dataset pushes: their own limit


@pytest.fixture
def small_client(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(
        update={"max_body_bytes": LIMIT, "max_dataset_bytes": DATASET_LIMIT}
    )
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
    assert scan.feed(b'{"a": "\\u00')
    assert not scan.feed(b'00"}')  # a NUL escape split across chunks
    assert scan.has_nul
    assert json_depth_ok(b'{"a": "\\\\u0000"}', 10)  # an escaped backslash, then text


def test_declared_oversize_body_is_413_naming_the_limit(
    small_client: TestClient, small_auth: Headers
) -> None:
    response = small_client.post(
        "/v1/families",
        content=json.dumps({"name": "f", "base_model": "x" * LIMIT}),
        headers={**small_auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "BodyTooLarge"
    assert f"{LIMIT} bytes" in response.json()["detail"]
    assert "TUNEGATE_MAX_BODY_BYTES" in response.json()["detail"]

    response = small_client.post(
        "/v1/datasets/big/versions",
        content=b'{"input": "x"}\n' * (DATASET_LIMIT // 10),
        headers={**small_auth, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 413
    assert f"{DATASET_LIMIT} bytes" in response.json()["detail"]
    assert "TUNEGATE_MAX_DATASET_BYTES" in response.json()["detail"]
    assert small_client.get("/v1/datasets/big", headers=small_auth).status_code == 404
    _ready(small_client)


def test_streamed_oversize_body_is_413(small_client: TestClient, small_auth: Headers) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(DATASET_LIMIT // 1000 + 5):
            yield b'{"input": "' + b"y" * 980 + b'"}\n'

    response = small_client.post(
        "/v1/datasets/streamed/versions",
        content=chunks(),
        headers={**small_auth, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 413, response.text
    assert "TUNEGATE_MAX_DATASET_BYTES" in response.json()["detail"]
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
    body = {
        "name": "fam",
        "base_model": "smollm2-135m-instruct",
        "x": json.loads("[" * 70 + "]" * 70),
    }
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


def test_ids_and_offsets_beyond_the_column_are_422(client: TestClient, auth: Headers) -> None:
    huge = 2**63
    for path in (
        f"/v1/candidates/{huge}",
        f"/v1/evaluations/{2**31}",
        f"/v1/decisions/{huge}",
        f"/v1/candidates?offset={2**31}",
        f"/v1/evaluations?candidate_id={huge}",
    ):
        response = client.get(path, headers=auth)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"] == "ValidationError"
    response = client.post(
        "/v1/evaluations", json={"candidate_id": huge, "dataset": "d"}, headers=auth
    )
    assert response.status_code == 422
    assert client.get(f"/v1/candidates/{2**31 - 1}", headers=auth).status_code == 404
    _ready(client)


@pytest.mark.parametrize(
    "policy",
    [
        "rules: [{kind: no_regression, metric: token_f1, tolerance: .nan}]",
        "rules: [{kind: threshold, metric: token_f1, min: -.inf}]",
        "seed: -1\nrules: [{kind: no_regression, metric: token_f1, tolerance: 0.1}]",
    ],
)
def test_non_finite_policies_and_negative_seeds_are_422(
    client: TestClient, auth: Headers, policy: str
) -> None:
    body = {"name": "fam", "base_model": "smollm2-135m-instruct", "policy": policy}
    response = client.post("/v1/families", json=body, headers=auth)
    assert response.status_code == 422, response.text
    _ready(client)


def test_control_characters_in_names_are_422(client: TestClient, auth: Headers) -> None:
    api_family(client, auth)
    body = {"family": "support-bot", "checkpoint": "/x", "learning_rate": 1e-4}
    for field, value in (("sweep", "w\n47"), ("name", "a\tb"), ("tags", {"k": "v\x07"})):
        response = client.post("/v1/candidates", json={**body, field: value}, headers=auth)
        assert response.status_code == 422, (field, response.text)
    metadata = json.dumps({"family": "support-bot", "learning_rate": 1e-4, "sweep": "a\x00"})
    response = client.post(
        "/v1/candidates/upload",
        files={"archive": ("a.tar", b"x", "application/x-tar")},
        data={"metadata": metadata},
        headers=auth,
    )
    assert response.status_code == 422, response.text
    _ready(client)


def test_unknown_users_home_is_422(client: TestClient, auth: Headers) -> None:
    body = {"name": "fam", "base_model": "~nosuchuser-tg/model"}
    response = client.post("/v1/families", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert "unknown user" in response.json()["detail"]
    api_family(client, auth)
    body = {"family": "support-bot", "checkpoint": "~nosuchuser-tg/x", "learning_rate": 1e-4}
    response = client.post("/v1/candidates", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert "unknown user" in response.json()["detail"]
    _ready(client)


def test_openapi_documents_every_error_with_the_real_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            expected = {"422", "503"}
            if any(s for s in operation.get("security", [])) or path.startswith("/v1/"):
                expected |= {"401", "403"}
            if "{" in path:
                expected.add("404")
            if method != "get":
                expected |= {"409", "413"}
            assert expected <= set(responses), (method, path, sorted(responses))
            for code in expected:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, code)
            assert "Retry-After" in responses["503"]["headers"]
