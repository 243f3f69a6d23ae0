"""Every JSON route answers a declared response model (no untyped objects at the edges)."""

from __future__ import annotations

from dataclasses import fields

from fastapi.testclient import TestClient

from service.api.schemas.decisions import RuleResultOut
from service.api.schemas.sweeps import SweepRuleOut
from service.gate.rules import RuleResult

NOT_JSON = {("/v1/datasets/{name}/versions/{version}/jsonl", "get"), ("/dashboard", "get")}


def _typed(schema: dict[str, object]) -> bool:
    """A $ref to a named model, or an array of them."""
    if "$ref" in schema:
        return True
    items = schema.get("items")
    return schema.get("type") == "array" and isinstance(items, dict) and "$ref" in items


def test_every_json_route_declares_a_response_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    untyped = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if (path, method) in NOT_JSON or path == "/":
                continue
            if set(operation["responses"]) & {"204", "205"}:
                continue  # answered with no body at all
            ok = [
                body["content"]["application/json"]["schema"]
                for status, body in operation["responses"].items()
                if status.startswith("2") and "content" in body
            ]
            if not ok or not all(_typed(schema) for schema in ok):
                untyped.append(f"{method.upper()} {path}")
    assert untyped == []
    sweep = spec["components"]["schemas"]["SweepOut"]["properties"]["rows"]
    assert sweep["items"]["$ref"].endswith("/SweepRowOut")
    rules = spec["components"]["schemas"]["DecisionOut"]["properties"]["rules"]
    assert rules["items"]["$ref"].endswith("/RuleResultOut")


def test_rule_result_model_mirrors_the_gate_rule_result() -> None:
    assert list(RuleResultOut.model_fields) == [f.name for f in fields(RuleResult)]
    # a sweep row's rules are a subset of the decision's, field for field
    for name, field in SweepRuleOut.model_fields.items():
        assert field.annotation == RuleResultOut.model_fields[name].annotation, name
