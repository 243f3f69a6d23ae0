"""The OpenAPI document declares what the edge refuses; 405 answers say what is allowed.

What schemathesis ``--checks all`` flagged: strings the spec left open that the
server refuses (control characters in paths and queries, NUL in JSON bodies), and
405 answers whose ``Allow`` named only one route's methods. The database plays no
part here: one SQLite app for the module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.db.migrate import upgrade_to_head
from service.settings import Settings


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder: Path = tmp_path_factory.mktemp("spec")
    url = f"sqlite:///{folder / 'tunegate.db'}"
    upgrade_to_head(url)
    settings = Settings(data_dir=folder / "data", database_url=url, queue="none")
    with TestClient(create_app(settings, migrate=False)) as client:
        client.headers["Authorization"] = f"Bearer {settings.admin_token_file.read_text().strip()}"
        yield client


def _strings(schema: Any, components: dict[str, Any], seen: set[str]) -> Iterator[dict[str, Any]]:
    """Every string schema (and property-name schema) under ``schema``."""
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            yield from _strings(components[name], components, seen)
        return
    if schema.get("type") == "string" and "enum" not in schema and "format" not in schema:
        yield schema
    if schema.get("additionalProperties") not in (None, False):
        yield schema["propertyNames"]
    for sub in (*schema.get("properties", {}).values(), *schema.get("anyOf", ())):
        yield from _strings(sub, components, seen)
    for key in ("items", "additionalProperties"):
        yield from _strings(schema.get(key), components, seen)


def test_the_spec_declares_the_refused_characters(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    params = bodies = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", ()):
                if parameter["in"] not in ("path", "query"):
                    continue
                for schema in _strings(parameter["schema"], components, set()):
                    assert not re.search(schema["pattern"], "a\x00b"), (method, path, parameter)
                    assert not re.search(schema["pattern"], "a\nb"), (method, path, parameter)
                    params += 1
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for schema in _strings(body and body["schema"], components, set()):
                assert not re.search(schema["pattern"], "a\x00b"), (method, path, schema)
                bodies += 1
    assert params > 20
    assert bodies > 10
    # ... and the server does refuse them
    assert app_client.get("/v1/families/a%01b").status_code == 422
    response = app_client.post("/v1/families", json={"name": "f", "base_model": "a\x00"})
    assert response.status_code == 422


def test_405_allows_every_method_of_the_path(app_client: TestClient) -> None:
    """``Allow`` holds the methods of every route the path matches: those of its own
    operations, and of a template that also matches it (``/v1/candidates/upload`` is
    also ``/v1/candidates/{candidate_id}``, which answers GET)."""
    spec = app_client.get("/openapi.json").json()
    templates = {
        re.compile(re.sub(r"\{[^}]*\}", "[^/]+", path)): {m.upper() for m in operations}
        for path, operations in spec["paths"].items()
    }
    for path in spec["paths"]:
        concrete = re.sub(r"\{[^}]*\}", "1", path)
        expected = set().union(*(m for t, m in templates.items() if t.fullmatch(concrete)))
        response = app_client.request("TRACE", concrete)
        assert response.status_code == 405, (path, response.status_code)
        allowed = {m.strip() for m in response.headers["Allow"].split(",")} - {"HEAD"}
        assert allowed == expected, (path, allowed, expected)
    assert len(spec["paths"]) > 30


def test_the_status_filter_is_an_enum_in_the_spec(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    statuses = spec["components"]["schemas"]["EvaluationStatus"]["enum"]
    assert "succeeded" in statuses
    assert app_client.get("/v1/evaluations", params={"status": "nope"}).status_code == 422
    assert app_client.get("/v1/evaluations", params={"status": "queued"}).status_code == 200
