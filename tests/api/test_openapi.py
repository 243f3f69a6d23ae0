"""The OpenAPI document lists the gate's routes with their parameters."""

from __future__ import annotations

from fastapi.testclient import TestClient

ROUTES = {
    "/v1/decisions": {"get"},
    "/v1/decisions/{decision_id}": {"get"},
    "/v1/decisions/{decision_id}/diff": {"get"},
    "/v1/families/{name}/promote": {"post"},
    "/v1/promotions": {"get"},
    "/v1/sweeps/{family}": {"get"},
    "/v1/sweeps/{family}/{sweep}": {"get"},
}


def test_openapi_lists_the_gate_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, methods in ROUTES.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    diff = {p["name"] for p in paths["/v1/decisions/{decision_id}/diff"]["get"]["parameters"]}
    assert {"metric", "domain", "cohort", "offset", "limit"} <= diff
    assert "evaluation_id" in {p["name"] for p in paths["/v1/decisions"]["get"]["parameters"]}
    assert "metric" in {
        p["name"] for p in paths["/v1/sweeps/{family}/{sweep}"]["get"]["parameters"]
    }
    promote = paths["/v1/families/{name}/promote"]["post"]
    assert "201" in promote["responses"]
    body_ref = promote["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = spec["components"]["schemas"][body_ref.rsplit("/", 1)[-1]]
    assert {"candidate_id", "alias", "reason", "override"} <= set(body["properties"])
