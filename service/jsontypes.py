"""JSON as types: what a JSON column, a JSON body or a JSON option holds.

``JSONValue`` is pydantic's recursive JSON type, so the same alias validates at the edges
and type-checks in the code (``dict[str, Any]`` would do neither).
"""

from __future__ import annotations

from pydantic import JsonValue

JSONValue = JsonValue
JSONObject = dict[str, JsonValue]
"""A JSON object: string keys, JSON values."""

__all__ = ["JSONObject", "JSONValue"]
