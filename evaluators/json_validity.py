"""JSON validity: does the output parse as JSON, and does it satisfy the example's schema?

Which examples: those with a ``json_schema``, and those in the cohort ``"json"`` (a JSON task
without a schema). Every other example gets ``{}``. ``json_schema_valid`` is produced only
when the example has a schema.

What counts as JSON: the output, stripped of surrounding whitespace, must be one JSON value
under strict JSON (``NaN``/``Infinity`` are rejected). With ``allow_fence=True`` (the default)
an output that is exactly one Markdown code fence (```` ```json ... ``` ```` or a bare
```` ``` ````) is unwrapped first, because chat-tuned models fence JSON by habit and callers
strip a lone fence. Prose around the JSON or the fence makes the output invalid: a program
could not consume it. An output that is not valid JSON scores 0.0 on both metrics.

A schema that is itself invalid raises :class:`InvalidExampleError` (never a silent 0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import jsonschema
from jsonschema.exceptions import SchemaError

from evaluators.base import Evaluator, Example, Metric
from evaluators.errors import InvalidExampleError

JSON_COHORT = "json"
_FENCE = re.compile(r"\A```[ \t]*(?:json)?[ \t]*\n(?P<body>.*?)\n?```\Z", re.DOTALL | re.IGNORECASE)
_NOT_PARSED = object()


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def parse_json_output(output: str, *, allow_fence: bool = True) -> Any:
    """The JSON value in ``output``, or the module's ``_NOT_PARSED`` sentinel if there is none."""
    text = output.strip()
    if allow_fence:
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group("body").strip()
    if not text:
        return _NOT_PARSED
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return _NOT_PARSED


def is_json(output: str, *, allow_fence: bool = True) -> bool:
    """Whether ``output`` is one JSON value under the rules in the module docstring."""
    return parse_json_output(output, allow_fence=allow_fence) is not _NOT_PARSED


class JsonValidityEvaluator(Evaluator):
    """``json_valid`` and, where the example has a schema, ``json_schema_valid``."""

    name: ClassVar[str] = "json_validity"
    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("json_valid", higher_is_better=True, binary=True),
        Metric("json_schema_valid", higher_is_better=True, binary=True),
    )

    def __init__(self, *, allow_fence: bool = True) -> None:
        self.allow_fence = allow_fence

    def applies_to(self, example: Example) -> bool:
        """Examples with a JSON schema or in the ``"json"`` cohort."""
        return example.json_schema is not None or example.cohort == JSON_COHORT

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        """Parse each output; validate it against the example's schema when there is one."""
        scores: list[dict[str, float]] = []
        for example, output in zip(examples, outputs, strict=True):
            if not self.applies_to(example):
                scores.append({})
                continue
            value = parse_json_output(output, allow_fence=self.allow_fence)
            parsed = value is not _NOT_PARSED
            row = {"json_valid": float(parsed)}
            if example.json_schema is not None:
                validator = _validator(example)
                row["json_schema_valid"] = float(parsed and validator.is_valid(value))
            scores.append(row)
        return scores


def _validator(example: Example) -> Any:
    """A jsonschema validator for the example's schema (draft picked from ``$schema``)."""
    schema = example.json_schema
    assert schema is not None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise InvalidExampleError(
            f"example {example.id!r} has an invalid JSON schema: {exc.message}"
        ) from exc
    return cls(schema)
