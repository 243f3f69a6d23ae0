"""The dataset JSONL format: records, validation, canonical form and digest.

A push is JSONL text, one JSON object a line (blank lines allowed):

- an optional FIRST record ``{"generation": {"max_new_tokens": 64, "chat_template": true,
  "system": "..."}}`` fixing how prompts are run (``system``: a dataset-wide system prompt,
  put before every prompt that does not open with its own system message);
- examples ``{"id", "input" | "messages", "reference", "context", "domain", "cohort",
  "json_schema", "answers", "choices", "answer", "target", "expect"}``: exactly one of
  ``input`` (a one-turn prompt) or ``messages`` (the OpenAI / TRL chat format,
  ``[{"role": "system"|"user"|"assistant", "content": "..."}]``, a system message only
  first, the last message the user's) is required; ``answers`` the accepted answers,
  ``choices`` (at least two) with ``answer`` the index of the right one, ``target`` a gold
  continuation, ``expect`` ``"refuse"`` or ``"comply"``; ``domain`` ``"in"`` by default,
  ``id`` the 1-based line number by default;
- held-out text for perplexity ``{"heldout": "..."}``.

``messages`` and ``system`` need ``chat_template: true``: they are rendered with the
model's chat template. A ``messages`` example's :attr:`Example.input` is its last user
message (what scorers and displays show); its canonical record holds ``messages`` only.

Every record is validated (extra keys refused, types checked, ``json_schema`` must be a
valid JSON Schema, ids unique); a bad line is refused with :class:`InvalidDataset` naming
the line and the reason.

The digest is the sha256 of the *canonical* JSONL: the generation record (defaults filled
in) first, then the examples in file order, then the held-out texts in file order, each
record with defaults filled in, absent optional fields dropped, keys sorted, compact
separators, joined by ``"\\n"``. The same content in another whitespace, key order or
interleaving of held-out lines is the same version. Fields added to the format are
optional and dropped when absent, so the digest of a dataset that does not use them never
changes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal, TypeVar

import jsonschema
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from evaluators.base import Example
from service.errors import InvalidDataset
from service.jsontypes import JSONObject, JSONValue

_KEY_MAX = 200


# --- records -------------------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_R = TypeVar("_R", bound=_Record)


class GenerationConfig(_Record):
    """How a dataset's prompts are run."""

    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    chat_template: bool = True
    system: str | None = Field(default=None, min_length=1)

    def stored(self) -> JSONObject:
        """The canonical (and stored) form: ``system`` only when set."""
        return self.model_dump(exclude_none=True)


class GenerationRecord(_Record):
    generation: GenerationConfig


class Message(_Record):
    """One chat turn (OpenAI / TRL conversational format)."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class ExampleRecord(_Record):
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


class HeldoutRecord(_Record):
    heldout: str = Field(min_length=1)


_ALLOWED_KEYS: dict[tuple[str, ...], Sequence[str]] = {
    ("example",): tuple(ExampleRecord.model_fields),
    ("example", "messages"): tuple(Message.model_fields),
    ("heldout",): tuple(HeldoutRecord.model_fields),
    ("generation",): tuple(GenerationRecord.model_fields),
    ("generation", "generation"): tuple(GenerationConfig.model_fields),
}


#: The optional example fields: in the canonical record only when set.
OPTIONAL_FIELDS = (
    "reference",
    "context",
    "cohort",
    "json_schema",
    "answers",
    "choices",
    "answer",
    "target",
    "expect",
)


def example_record(example: Example) -> JSONObject:
    """The canonical record: ``id``, ``input`` or ``messages``, ``domain`` and the
    optional fields that are set."""
    out: JSONObject = {"id": example.id, "domain": example.domain}
    if example.messages is not None:
        messages: list[JSONValue] = [{**message} for message in example.messages]
        out["messages"] = messages
    else:
        out["input"] = example.input
    for name in OPTIONAL_FIELDS:
        value = getattr(example, name)
        if value is not None:
            out[name] = value
    return out


@dataclass(frozen=True)
class ParsedDataset:
    """A validated push, ready to store."""

    generation: GenerationConfig
    examples: list[Example]
    heldout: list[str] = field(default_factory=list)

    @property
    def canonical(self) -> str:
        return canonical_jsonl(self.generation.stored(), self.examples, self.heldout)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical.encode("utf-8")).hexdigest()


def _dumps(record: JSONObject) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_jsonl(
    generation: JSONObject, examples: Sequence[Example], heldout: Sequence[str]
) -> str:
    """The canonical text whose sha256 is a version's digest (no trailing newline)."""
    lines = [_dumps({"generation": generation})]
    lines += [_dumps(example_record(example)) for example in examples]
    lines += [_dumps({"heldout": text}) for text in heldout]
    return "\n".join(lines)


# --- parsing -------------------------------------------------------------------------


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in JSON")


def _check_values(value: object) -> None:
    """Refuse what the databases cannot store faithfully: NUL characters, non-finite numbers."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters (\\u0000)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_values(key)
            _check_values(item)
    elif isinstance(value, list):
        for item in value:
            _check_values(item)


def _describe(error: ErrorDetails, kind: str) -> str:
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


def _lines(body: bytes) -> Iterator[tuple[int, str]]:
    """Decode UTF-8 (a BOM is dropped) and yield (1-based line number, line) pairs.

    Splits on ``\\n`` only: ``str.splitlines`` would also split inside JSON strings
    holding U+2028 and friends.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = body[: exc.start].count(b"\n") + 1
        raise InvalidDataset(f"line {bad}: not valid UTF-8") from exc
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


#: How a refusal names a record: ``line 3`` for JSONL; ``row 2`` for a table.
Where = Callable[[int], str]


def _line(number: int) -> str:
    return f"line {number}"


def _load_line(number: int, line: str, where: Where = _line) -> JSONObject:
    try:
        obj = json.loads(line, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidDataset(
            f"{where(number)}: not valid JSON: {exc.msg} (col {exc.colno})"
        ) from exc
    except ValueError as exc:
        raise InvalidDataset(f"{where(number)}: not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidDataset(
            f"{where(number)}: each line must be a JSON object, not {_json_kind(obj)}"
        )
    try:
        _check_values(obj)
    except ValueError as exc:
        raise InvalidDataset(f"{where(number)}: {exc}") from exc
    return obj


def _validate(model: type[_R], obj: JSONObject, number: int, kind: str, where: Where = _line) -> _R:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        reasons = "; ".join(_describe(error, kind) for error in exc.errors())
        raise InvalidDataset(f"{where(number)}: {reasons}") from exc


def parse_dataset(body: bytes, *, where: Where = _line) -> ParsedDataset:
    """Validate a JSONL push; raises :class:`InvalidDataset` naming the first bad line
    (``where(line number)``: how a refusal names it)."""
    generation = GenerationConfig()
    examples: list[Example] = []
    heldout: list[str] = []
    first_line: dict[str, int] = {}
    seen_record = False
    for number, line in _lines(body):
        if not line.strip():
            continue
        obj = _load_line(number, line, where)
        if "generation" in obj:
            if seen_record:
                raise InvalidDataset(
                    f'{where(number)}: the "generation" record must be the first record'
                )
            generation = _validate(GenerationRecord, obj, number, "generation", where).generation
            if generation.system is not None and not generation.chat_template:
                raise InvalidDataset(f'{where(number)}: "system" needs "chat_template": true')
        elif "heldout" in obj:
            heldout.append(_validate(HeldoutRecord, obj, number, "heldout", where).heldout)
        else:
            record = _validate(ExampleRecord, obj, number, "example", where)
            if record.messages is not None and not generation.chat_template:
                raise InvalidDataset(
                    f'{where(number)}: "messages" need "chat_template": true in the '
                    "generation record (they are rendered with the model's chat template)"
                )
            key = record.id if record.id is not None else str(number)
            if key in first_line:
                raise InvalidDataset(
                    f'{where(number)}: duplicate id "{key}" (first used on '
                    f"{where(first_line[key])})"
                )
            first_line[key] = number
            fields = record.model_dump(exclude={"id", "input"})  # defaults filled in
            examples.append(Example(id=key, input=record.prompt_text(), **fields))
        seen_record = True
    if not examples:
        raise InvalidDataset('the dataset has no examples (records with "input" or "messages")')
    return ParsedDataset(generation=generation, examples=examples, heldout=heldout)
