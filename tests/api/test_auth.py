"""Scopes on the dataset, family and token endpoints; issuing, listing and revoking tokens."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from service.auth import SCOPES

Headers = dict[str, str]
DATASET = b'{"input": "Say hello.", "reference": "Hello!"}\n{"heldout": "Some text."}'
_names = itertools.count()


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    scope: str
    body: Callable[[TestClient, Headers], dict[str, object]] = lambda _c, _a: {}


def _new_family(_client: TestClient, _admin: Headers) -> dict[str, object]:
    return {"json": {"name": f"fam-{next(_names)}", "base_model": "smollm2-135m-instruct"}}


def _victim_token(client: TestClient, admin: Headers) -> dict[str, object]:
    victim = client.post("/v1/tokens", json={"scope": "read", "name": "victim"}, headers=admin)
    return {"path_suffix": str(victim.json()["id"])}


POLICY = {"rules": [{"kind": "no_regression", "metric": "relevance", "tolerance": 0.01}]}
VERSION = "/v1/datasets/support/versions/latest"
ENDPOINTS = [
    Endpoint("POST", "/v1/datasets/support/versions", "submit", lambda *_: {"content": DATASET}),
    Endpoint("GET", "/v1/datasets", "read"),
    Endpoint("GET", "/v1/datasets/support", "read"),
    Endpoint("GET", "/v1/datasets/support/versions", "read"),
    Endpoint("GET", VERSION, "read"),
    Endpoint("GET", f"{VERSION}/examples", "read"),
    Endpoint("GET", f"{VERSION}/jsonl", "read"),
    Endpoint("POST", "/v1/families", "submit", _new_family),
    Endpoint("GET", "/v1/families", "read"),
    Endpoint("GET", "/v1/families/support-bot", "read"),
    Endpoint("GET", "/v1/families/support-bot/policy", "read"),
    Endpoint("GET", "/v1/families/support-bot/policies", "read"),
    Endpoint("GET", "/v1/families/support-bot/aliases", "read"),
    Endpoint("PUT", "/v1/families/support-bot/policy", "admin", lambda *_: {"json": POLICY}),
    Endpoint("POST", "/v1/tokens", "admin", lambda *_: {"json": {"scope": "read", "name": "x"}}),
    Endpoint("GET", "/v1/tokens", "admin"),
    Endpoint("DELETE", "/v1/tokens/", "admin", _victim_token),
]


@pytest.fixture
def seeded(client: TestClient, auth: Headers) -> TestClient:
    """A dataset ``support`` and a family ``support-bot``, so reads have something to read."""
    pushed = client.post("/v1/datasets/support/versions", content=DATASET, headers=auth)
    assert pushed.status_code == 201
    family = {"name": "support-bot", "base_model": "smollm2-135m-instruct"}
    assert client.post("/v1/families", json=family, headers=auth).status_code == 201
    return client


def test_scope_rules(seeded: TestClient, auth: Headers, token_for: Callable[[str], str]) -> None:
    """Every endpoint, every caller: no token 401, a lower scope 403, its scope or higher 2xx."""
    headers: dict[str | None, Headers] = {None: {}}
    headers.update({s: {"Authorization": f"Bearer {token_for(s)}"} for s in SCOPES})
    wrong = []
    for endpoint, caller in itertools.product(ENDPOINTS, [None, *SCOPES]):
        kwargs = endpoint.body(seeded, auth)
        path = endpoint.path + str(kwargs.pop("path_suffix", ""))
        response = seeded.request(endpoint.method, path, headers=headers[caller], **kwargs)
        if caller is None:
            expected: tuple[object, ...] = (401, "NotAuthenticated")
        elif SCOPES.index(caller) < SCOPES.index(endpoint.scope):  # type: ignore[arg-type]
            expected = (403, "PermissionDenied")
        else:
            expected = ("2xx",)
        if response.is_success:
            got: tuple[object, ...] = ("2xx",)
        else:
            got = (response.status_code, response.json().get("error"))
        if got != expected:
            wrong.append(f"{endpoint.method} {path} as {caller}: {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def test_forbidden_write_changes_nothing(
    seeded: TestClient, auth: Headers, token_for: Callable[[str], str]
) -> None:
    submit = {"Authorization": f"Bearer {token_for('submit')}"}
    url = "/v1/families/support-bot/policy"
    assert seeded.put(url, json=POLICY, headers=submit).status_code == 403
    assert [
        p["version"] for p in seeded.get("/v1/families/support-bot/policies", headers=auth).json()
    ] == [1]


def test_unknown_or_malformed_token(client: TestClient) -> None:
    for authorization in ["Bearer tg_not-a-real-token", "Bearer ", "Basic dXNlcjpw", "tg_x"]:
        response = client.get("/v1/datasets", headers={"Authorization": authorization})
        assert response.status_code == 401, authorization
        assert response.json()["error"] == "NotAuthenticated"


def test_issue_list_revoke(client: TestClient, auth: Headers) -> None:
    issued = client.post("/v1/tokens", json={"scope": "submit", "name": "ci"}, headers=auth)
    assert issued.status_code == 201
    token = issued.json()
    assert token["scope"] == "submit"
    assert token["token"].startswith("tg_")
    assert token["revoked_at"] is None
    ci = {"Authorization": f"Bearer {token['token']}"}
    assert client.get("/v1/datasets", headers=ci).status_code == 200

    listing = client.get("/v1/tokens", headers=auth)
    assert token["token"] not in listing.text
    assert all("token" not in row and "token_hash" not in row for row in listing.json())
    assert {(row["name"], row["scope"]) for row in listing.json()} == {
        ("local-admin", "admin"),
        ("ci", "submit"),
    }

    revoked = client.delete(f"/v1/tokens/{token['id']}", headers=auth)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    response = client.get("/v1/datasets", headers=ci)
    assert (response.status_code, response.json()["error"]) == (401, "NotAuthenticated")
    again = client.delete(f"/v1/tokens/{token['id']}", headers=auth).json()
    assert again["revoked_at"] == revoked.json()["revoked_at"]  # idempotent
    rows = {row["id"]: row for row in client.get("/v1/tokens", headers=auth).json()}
    assert rows[token["id"]]["revoked_at"] is not None


def test_token_errors(client: TestClient, auth: Headers) -> None:
    missing = client.delete("/v1/tokens/999", headers=auth)
    assert (missing.status_code, missing.json()["error"]) == (404, "NotFound")
    bad_scope = client.post("/v1/tokens", json={"scope": "root", "name": "x"}, headers=auth)
    assert (bad_scope.status_code, bad_scope.json()["error"]) == (422, "ValidationError")
    no_name = client.post("/v1/tokens", json={"scope": "read", "name": ""}, headers=auth)
    assert no_name.status_code == 422
    assert len(client.get("/v1/tokens", headers=auth).json()) == 1


def test_issued_scopes_work(client: TestClient, auth: Headers) -> None:
    for scope in SCOPES:
        issued = client.post("/v1/tokens", json={"scope": scope, "name": scope}, headers=auth)
        headers = {"Authorization": f"Bearer {issued.json()['token']}"}
        response = client.get("/v1/tokens", headers=headers)
        assert response.status_code == (200 if scope == "admin" else 403), scope
