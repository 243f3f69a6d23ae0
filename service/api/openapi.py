"""The OpenAPI document says what the edge refuses, and 405 answers say what is allowed.

:class:`~service.api.limits.BodyLimits` refuses control characters (NUL included)
in any path or query string, and ``\\u0000`` in any JSON string, for every route.
Pydantic cannot see those bounds, so :func:`declare_edge_bounds` writes them into
the document: a ``pattern`` on every string parameter and every string (and
property name) of a JSON request body that has none — a client or fuzzer reading
the spec then knows that such input is refused, rather than finding it by a 422.

:func:`allowed_methods` is the ``Allow`` header of a 405: every method some route
serves on that path (Starlette names only the first route's).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

#: What a path or query parameter may hold (``BodyLimits`` refuses control characters).
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
#: What a string in a JSON body may hold (``BodyLimits`` refuses ``\u0000``).
NO_NUL = r"^[^\x00]*$"

_UNTOUCHED = ("pattern", "enum", "const", "format")
_ANY = "JsonWithoutNul"
#: Any JSON value without NUL in a string or key: what an ignored extra key may hold.
_ANY_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value without NUL (\\u0000) in a string or key",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": f"#/components/schemas/{_ANY}"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": f"#/components/schemas/{_ANY}"},
        },
    ],
}


def _bound_strings(schema: Any, pattern: str, components: dict[str, Any], seen: set[str]) -> None:
    """Give every unpatterned string under ``schema`` ``pattern`` (following ``$ref``s once)."""
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            _bound_strings(components.get(name), pattern, components, seen)
        return
    if schema.get("type") == "string" and not any(key in schema for key in _UNTOUCHED):
        schema["pattern"] = pattern
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        schema.setdefault("propertyNames", {"pattern": pattern})
        if pattern == NO_NUL and "additionalProperties" not in schema:
            # extra keys are ignored, but their values pass the same NUL scan
            schema["additionalProperties"] = {"$ref": f"#/components/schemas/{_ANY}"}
    for key in ("properties", "patternProperties", "$defs"):
        for sub in (schema.get(key) or {}).values():
            _bound_strings(sub, pattern, components, seen)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key) or ():
            _bound_strings(sub, pattern, components, seen)
    for key in ("items", "additionalProperties", "not"):
        _bound_strings(schema.get(key), pattern, components, seen)


def declare_edge_bounds(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the edge's refusals declared as patterns (changed in place)."""
    components: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
    components[_ANY] = _ANY_SCHEMA
    seen: set[str] = {_ANY}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", ()):
                if parameter.get("in") in ("path", "query"):
                    _bound_strings(parameter.get("schema"), NO_CONTROL, components, set())
            content = (operation.get("requestBody") or {}).get("content", {})
            for media_type, body in content.items():
                if media_type.split(";")[0].strip().endswith("json"):
                    _bound_strings(body.get("schema"), NO_NUL, components, seen)
    return spec


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The ``Allow`` header for a 405 on ``scope``'s path: every route's methods there."""
    methods: set[str] = set()
    for route in routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(scope)[0] is not Match.NONE:
            methods |= set(route_methods)
    return ", ".join(sorted(methods))
