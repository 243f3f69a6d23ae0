"""Families, their policy versions, base candidate and aliases through the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import families
from service.db.models import Alias, Candidate
from service.db.session import unit_of_work
from service.gate.policy import DEFAULT_POLICY, policy_json
from service.settings import Settings

Headers = dict[str, str]

YAML_POLICY = """
alpha: 0.1
rules:
  - kind: no_regression
    metric: relevance
    tolerance: 0.02
  - kind: out_of_domain_delta
    metric: relevance_reference
    tolerance: 0.01
"""


@pytest.fixture
def model_dir(settings: Settings) -> Path:
    """A model folder under the allowed model roots (a config is all families look at)."""
    folder = settings.allowed_model_roots[0] / "tiny-base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def create(client: TestClient, auth: Headers, **body: object) -> tuple[int, dict[str, object]]:
    body = {"name": "support-bot", "base_model": "smollm2-135m-instruct", **body}
    response = client.post("/v1/families", json=body, headers=auth)
    return response.status_code, response.json()


def test_create_with_default_policy(client: TestClient, auth: Headers) -> None:
    status, family = create(client, auth)
    assert status == 201, family
    assert family["name"] == "support-bot"
    assert family["base_model"] == "smollm2-135m-instruct"
    assert family["policy_version"] == 1
    assert family["aliases"] == {}

    policy = client.get("/v1/families/support-bot/policy", headers=auth).json()
    assert policy["version"] == 1
    assert policy["policy"] == json.loads(policy_json(DEFAULT_POLICY))

    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        row = families.get_family(session, "support-bot")
        base = families.base_candidate(session, row)
        assert base.id == family["base_candidate_id"]
        assert (base.kind, base.name, base.checkpoint_path) == ("base", "base", None)
        assert (base.base_model, base.learning_rate) == ("smollm2-135m-instruct", None)
        assert families.baseline_candidate(session, row).id == base.id
        assert families.policy_of(families.current_policy(session, row)) == DEFAULT_POLICY

    assert client.get("/v1/families/support-bot", headers=auth).json() == family
    assert [f["name"] for f in client.get("/v1/families", headers=auth).json()] == ["support-bot"]


def test_create_with_yaml_policy_and_local_base(
    client: TestClient, auth: Headers, model_dir: Path
) -> None:
    status, family = create(client, auth, base_model=str(model_dir), policy=YAML_POLICY)
    assert status == 201, family
    assert family["base_model"] == str(model_dir.resolve())
    policy = client.get("/v1/families/support-bot/policy", headers=auth).json()["policy"]
    assert policy["alpha"] == 0.1
    assert [r["kind"] for r in policy["rules"]] == ["no_regression", "out_of_domain_delta"]
    assert policy["rules"][0]["id"] == "no_regression:relevance:all"


def test_create_with_json_object_policy(client: TestClient, auth: Headers) -> None:
    rules = [{"kind": "threshold", "metric": "empty_output", "max": 0.1}]
    status, _ = create(client, auth, policy={"rules": rules})
    assert status == 201
    policy = client.get("/v1/families/support-bot/policy", headers=auth).json()["policy"]
    assert policy["rules"][0]["max"] == 0.1


BAD_POLICIES = [
    ("rules: [", "policy is neither valid JSON nor YAML"),
    ({"rules": []}, "invalid policy: rules"),
    (
        {"rules": [{"kind": "no_regression", "metric": "relevance", "tolerance": -1}]},
        "tolerance",
    ),
    ({"rules": [{"kind": "teleport", "metric": "x"}]}, "invalid policy"),
    ({"alpha": 0.05}, "rules"),
]


def test_bad_policy_is_refused(client: TestClient, auth: Headers) -> None:
    for policy, detail in BAD_POLICIES:
        status, body = create(client, auth, policy=policy)
        assert (status, body["error"]) == (422, "InvalidPolicy"), policy
        assert detail in body["detail"], body["detail"]
    assert client.get("/v1/families", headers=auth).json() == []


def test_base_model_must_be_builtin_or_under_the_roots(
    client: TestClient, auth: Headers, settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    sneaky = settings.allowed_model_roots[0] / "sneaky"
    sneaky.symlink_to(outside)
    no_config = settings.allowed_model_roots[0] / "empty"
    no_config.mkdir()
    cases = {
        str(outside): "outside the allowed model roots",
        str(sneaky): "outside the allowed model roots",
        str(model_dir / "missing"): "does not exist",
        str(no_config): "has no config.json",
        str(model_dir / "config.json"): "is not a folder",
        "HuggingFaceTB/SmolLM2-135M": "neither a built-in model",
    }
    for base_model, reason in cases.items():
        status, body = create(client, auth, base_model=base_model)
        assert status == 422, base_model
        assert body["error"] == "InvalidRequest"
        assert reason in body["detail"], body["detail"]
    assert client.get("/v1/families", headers=auth).json() == []


def test_duplicate_family(client: TestClient, auth: Headers) -> None:
    assert create(client, auth)[0] == 201
    status, body = create(client, auth)
    assert status == 409
    assert body["error"] == "AlreadyExists"


def test_bad_family_name(client: TestClient, auth: Headers) -> None:
    status, body = create(client, auth, name="no spaces/please")
    assert status == 422
    assert body["error"] == "ValidationError"


def test_policy_versions(client: TestClient, auth: Headers) -> None:
    create(client, auth)
    url = "/v1/families/support-bot/policy"
    yaml_headers = {**auth, "Content-Type": "application/yaml"}

    response = client.put(url, content=YAML_POLICY, headers=yaml_headers)
    assert response.status_code == 201, response.json()
    assert (response.json()["version"], response.json()["created"]) == (2, True)

    # The same policy as a JSON body, reordered: the same content, no new version.
    as_json = {
        "rules": [
            {"metric": "relevance", "kind": "no_regression", "tolerance": 0.02},
            {"tolerance": 0.01, "kind": "out_of_domain_delta", "metric": "relevance_reference"},
        ],
        "alpha": 0.1,
    }
    response = client.put(url, json=as_json, headers=auth)
    assert response.status_code == 200
    assert (response.json()["version"], response.json()["created"]) == (2, False)

    response = client.put(url, json={**as_json, "alpha": 0.01}, headers=auth)
    assert (response.status_code, response.json()["version"]) == (201, 3)

    versions = client.get("/v1/families/support-bot/policies", headers=auth).json()
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert client.get(url, headers=auth).json()["policy"]["alpha"] == 0.01
    old = client.get(f"{url}?version=2", headers=auth).json()
    assert (old["version"], old["policy"]["alpha"]) == (2, 0.1)
    assert client.get("/v1/families/support-bot", headers=auth).json()["policy_version"] == 3

    missing = client.get(f"{url}?version=9", headers=auth)
    assert (missing.status_code, missing.json()["error"]) == (404, "NotFound")
    bad = client.put(url, content="rules: [", headers=yaml_headers)
    assert (bad.status_code, bad.json()["error"]) == (422, "InvalidPolicy")
    assert len(client.get("/v1/families/support-bot/policies", headers=auth).json()) == 3


def test_unknown_family(client: TestClient, auth: Headers) -> None:
    for path in ("", "/policy", "/policies", "/aliases"):
        response = client.get(f"/v1/families/nope{path}", headers=auth)
        assert (response.status_code, response.json()["error"]) == (404, "FamilyNotFound")


def test_aliases_and_baseline(client: TestClient, auth: Headers) -> None:
    _, family = create(client, auth)
    assert client.get("/v1/families/support-bot/aliases", headers=auth).json() == []
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        row = families.get_family(session, "support-bot")
        tuned = Candidate(family_id=row.id, kind="lora", base_model=row.base_model)
        session.add(tuned)
        session.flush()
        session.add(Alias(family_id=row.id, name="production", candidate_id=tuned.id))
        session.flush()
        assert families.baseline_candidate(session, row).id == tuned.id
        tuned_id = tuned.id

    aliases = client.get("/v1/families/support-bot/aliases", headers=auth).json()
    assert [(a["name"], a["candidate_id"]) for a in aliases] == [("production", tuned_id)]
    detail = client.get("/v1/families/support-bot", headers=auth).json()
    assert detail["aliases"] == {"production": tuned_id}
    assert detail["base_candidate_id"] == family["base_candidate_id"] != tuned_id
