"""JSON validity and schema validity."""

from __future__ import annotations

import pytest

from evaluators.base import Example
from evaluators.errors import InvalidExampleError
from evaluators.json_validity import JsonValidityEvaluator, is_json

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
WITH_SCHEMA = Example(id="user", input="Give the user as JSON.", json_schema=SCHEMA)
JSON_COHORT = Example(id="any", input="Any JSON.", cohort="json")


def score(output: str, example: Example = WITH_SCHEMA, **options: bool) -> dict[str, float]:
    return JsonValidityEvaluator(**options).score([example], [output])[0]


def test_valid_and_conforming() -> None:
    assert score('{"name": "Ada", "age": 36}') == {"json_valid": 1.0, "json_schema_valid": 1.0}


def test_schema_violation() -> None:
    assert score('{"name": "Ada", "age": -1}') == {"json_valid": 1.0, "json_schema_valid": 0.0}
    assert score('{"name": "Ada"}')["json_schema_valid"] == 0.0
    assert score('["Ada", 36]')["json_schema_valid"] == 0.0


def test_invalid_json_fails_both() -> None:
    for output in ('{"name": "Ada", "age": 36', "{'name': 'Ada'}", "", '{"x": NaN}'):
        assert score(output) == {"json_valid": 0.0, "json_schema_valid": 0.0}, output


def test_a_lone_fence_is_tolerated_but_prose_is_not() -> None:
    fenced = '```json\n{"name": "Ada", "age": 36}\n```'
    assert score(fenced) == {"json_valid": 1.0, "json_schema_valid": 1.0}
    assert score(fenced, allow_fence=False)["json_valid"] == 0.0
    assert not is_json('Here you go:\n```json\n{"a": 1}\n```')
    assert not is_json('{"a": 1} Hope this helps!')


def test_cohort_json_without_schema_gets_validity_only() -> None:
    assert score("[1, 2, 3]", JSON_COHORT) == {"json_valid": 1.0}
    assert score("not json", JSON_COHORT) == {"json_valid": 0.0}


def test_other_examples_are_not_scored() -> None:
    assert score("{}", Example(id="chat", input="Hi", cohort="chat")) == {}


def test_an_invalid_schema_is_an_error_not_a_zero() -> None:
    bad = Example(id="bad", input="x", json_schema={"type": "no-such-type"})
    with pytest.raises(InvalidExampleError, match="bad"):
        score("{}", bad)
