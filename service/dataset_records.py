"""The records of a dataset push, one per JSONL line, and how their errors read.

Each record is a strict pydantic model (extra keys refused, no type coercion);
:func:`describe` turns one validation error into a sentence about the record's
keys, listing the known keys when an unknown one appears. The format itself (which
record goes where, the canonical form, the digest) is :mod:`service.dataset_format`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import ErrorDetails

from service.jsontypes import JSONObject

_KEY_MAX = 200


class Record(BaseModel):
    """A line's record: strict, extra keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GenerationConfig(Record):
    """How a dataset's prompts are run."""

    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    chat_template: bool = True
    system: str | None = Field(default=None, min_length=1)

    def stored(self) -> JSONObject:
        """The canonical (and stored) form: ``system`` only when set."""
        return self.model_dump(exclude_none=True)


class GenerationRecord(Record):
    generation: GenerationConfig


class Message(Record):
    """One chat turn (OpenAI / TRL conversational format)."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class ExampleRecord(Record):
    """One example line; ``id`` may be a string or an integer (stored as a string)."""

    id: str | None = Field(default=None, min_length=1, max_length=_KEY_MAX)
    input: str | None = Field(default=None, min_length=1)
    messages: list[Message] | None = Field(default=None, min_length=1)
    reference: str | None = None
    context: str | None = None
    domain: Literal["in", "out"] = "in"
    cohort: str | None = Field(default=None, max_length=_KEY_MAX)
    json_schema: JSONObject | None = None
    answers: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    choices: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=2)
    answer: int | None = Field(default=None, ge=0)
    target: str | None = Field(default=None, min_length=1)
    expect: Literal["refuse", "comply"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ExampleRecord:
        if (self.input is None) == (self.messages is None):
            raise ValueError('an example needs exactly one of "input" or "messages"')
        if self.messages is not None:
            if self.messages[-1].role != "user":
                raise ValueError('the last of "messages" must be the user\'s')
            if any(m.role == "system" for m in self.messages[1:]):
                raise ValueError('a "system" message may only be the first of "messages"')
        if (self.choices is None) != (self.answer is None):
            raise ValueError('"choices" and "answer" go together')
        if self.choices is not None and self.answer is not None:
            if self.answer >= len(self.choices):
                raise ValueError(
                    f'"answer" {self.answer} is not an index of "choices" '
                    f"(0 to {len(self.choices) - 1})"
                )
        return self

    def prompt_text(self) -> str:
        """``input``, or the last (user) message's content."""
        if self.input is not None:
            return self.input
        assert self.messages is not None
        return self.messages[-1].content

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if value is not None and not isinstance(value, str):
            raise ValueError("must be a string or an integer")
        return value

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: JSONObject | None) -> JSONObject | None:
        if value is not None:
            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"is not a valid JSON Schema: {exc.message}") from exc
        return value


class HeldoutRecord(Record):
    heldout: str = Field(min_length=1)


_ALLOWED_KEYS: dict[tuple[str, ...], Sequence[str]] = {
    ("example",): tuple(ExampleRecord.model_fields),
    ("example", "messages"): tuple(Message.model_fields),
    ("heldout",): tuple(HeldoutRecord.model_fields),
    ("generation",): tuple(GenerationRecord.model_fields),
    ("generation", "generation"): tuple(GenerationConfig.model_fields),
}


def describe(error: ErrorDetails, kind: str) -> str:
    """One pydantic error as a sentence about the record's keys."""
    loc = tuple(str(p) for p in error["loc"])
    where = ".".join(loc)
    ctx = error.get("ctx", {})
    if not loc and error["type"] == "value_error":  # a rule across fields
        return str(ctx.get("error"))
    kind_name = {"example": "an example", "heldout": "a heldout", "generation": "a generation"}
    match error["type"]:
        case "missing":
            return f'"{where}" is required'
        case "extra_forbidden":
            path = tuple(p for p in loc[:-1] if not p.isdigit())  # list indexes dropped
            allowed = _ALLOWED_KEYS.get((kind, *path), ())
            known = ", ".join(f'"{k}"' for k in allowed)
            return f'unknown key "{where}" in {kind_name[kind]} record (known: {known})'
        case "literal_error":
            return f'"{where}" must be {str(ctx.get("expected", "")).replace(chr(39), chr(34))}'
        case "string_type":
            return f'"{where}" must be a string'
        case "int_type":
            return f'"{where}" must be an integer'
        case "bool_type":
            return f'"{where}" must be true or false'
        case "dict_type" | "model_type":
            return f'"{where}" must be a JSON object'
        case "string_too_short":
            return f'"{where}" must not be empty'
        case "list_type":
            return f'"{where}" must be a JSON array'
        case "too_short":
            n = ctx.get("min_length")
            return f'"{where}" must hold at least {n} item{"s" if n != 1 else ""}'
        case "string_too_long":
            return f'"{where}" must be at most {ctx.get("max_length")} characters'
        case "greater_than_equal":
            return f'"{where}" must be at least {ctx.get("ge")}'
        case "less_than_equal":
            return f'"{where}" must be at most {ctx.get("le")}'
        case "value_error":
            return f'"{where}" {ctx.get("error")}'
        case _:
            return f'"{where}": {error["msg"]}'
