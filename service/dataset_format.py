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
valid JSON Schema, ids unique, no NUL, finite numbers, at most ``max_depth`` levels of
nesting); a bad line is refused with :class:`InvalidDataset` naming the line and the
reason. :class:`RecordReader` applies these rules one line at a time, so a push can be
read as it streams in (:mod:`service.dataset_spool`) as well as from memory
(:func:`parse_dataset`). The records themselves are :mod:`service.dataset_records`.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pydantic import ValidationError

from evaluators.base import Example
from service.dataset_records import (
    ExampleRecord,
    GenerationConfig,
    GenerationRecord,
    HeldoutRecord,
    Record,
    describe,
)
from service.errors import InvalidDataset
from service.jsontypes import JSONObject, JSONValue

__all__ = [
    "MAX_DEPTH",
    "OPTIONAL_FIELDS",
    "Counts",
    "DatasetContent",
    "ExampleRecord",
    "GenerationConfig",
    "ParsedDataset",
    "RecordReader",
    "canonical_jsonl",
    "canonical_line",
    "example_record",
    "parse_dataset",
]

#: Nesting levels of arrays and objects a line may hold (``TUNEGATE_MAX_JSON_DEPTH``).
MAX_DEPTH = 64

_R = TypeVar("_R", bound=Record)


# --- canonical form ------------------------------------------------------------------

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


def canonical_line(record: JSONObject) -> str:
    """One record of the canonical JSONL: keys sorted, compact, UTF-8 as is."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_jsonl(
    generation: JSONObject, examples: Sequence[Example], heldout: Sequence[str]
) -> str:
    """The canonical text whose sha256 is a version's digest (no trailing newline)."""
    lines = [canonical_line({"generation": generation})]
    lines += [canonical_line(example_record(example)) for example in examples]
    lines += [canonical_line({"heldout": text}) for text in heldout]
    return "\n".join(lines)


@dataclass(frozen=True)
class Counts:
    """What a version holds, as stored on its row."""

    n_examples: int = 0
    n_in_domain: int = 0
    n_out_domain: int = 0
    n_heldout: int = 0


class DatasetContent(Protocol):
    """A validated push, ready to store: in memory (:class:`ParsedDataset`) or spooled
    to disk (:class:`service.dataset_spool.DatasetSpool`)."""

    @property
    def generation(self) -> GenerationConfig: ...

    @property
    def digest(self) -> str: ...

    @property
    def counts(self) -> Counts: ...

    def example_records(self) -> Iterable[JSONObject]:
        """The canonical example records, in file order."""
        ...

    def heldout_texts(self) -> Iterable[str]:
        """The held-out texts, in file order."""
        ...


@dataclass(frozen=True)
class ParsedDataset:
    """A validated push held in memory."""

    generation: GenerationConfig
    examples: list[Example]
    heldout: list[str] = field(default_factory=list)

    @property
    def canonical(self) -> str:
        return canonical_jsonl(self.generation.stored(), self.examples, self.heldout)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical.encode("utf-8")).hexdigest()

    @property
    def counts(self) -> Counts:
        return Counts(
            n_examples=len(self.examples),
            n_in_domain=sum(e.domain == "in" for e in self.examples),
            n_out_domain=sum(e.domain == "out" for e in self.examples),
            n_heldout=len(self.heldout),
        )

    def example_records(self) -> Iterator[JSONObject]:
        return (example_record(example) for example in self.examples)

    def heldout_texts(self) -> Iterator[str]:
        return iter(self.heldout)


# --- reading lines -------------------------------------------------------------------


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in JSON")


def _too_deep(max_depth: int) -> str:
    return f"JSON nested deeper than {max_depth} levels is refused"


_NUL = "text must not contain NUL characters (\\u0000)"


def _check_values(value: object, max_depth: int, depth: int = 0) -> None:
    """Refuse what the databases cannot store faithfully — NUL characters, non-finite
    numbers — and nesting deeper than ``max_depth`` (never recursing past it)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(_NUL)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
    elif isinstance(value, dict | list):
        if depth >= max_depth:
            raise ValueError(_too_deep(max_depth))
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise ValueError(_NUL)
                if not isinstance(item, str):  # most values: checked here, no call
                    _check_values(item, max_depth, depth + 1)
                elif "\x00" in item:
                    raise ValueError(_NUL)
        else:
            for item in value:
                _check_values(item, max_depth, depth + 1)


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

#: ``claim(id, line)``: the line that used ``id`` first, or ``None`` (it is now claimed).
Claim = Callable[[str, int], int | None]


def _line(number: int) -> str:
    return f"line {number}"


class RecordReader:
    """The rules of a push applied one line at a time, in line order.

    :meth:`read` returns what a line holds — the :class:`GenerationConfig`, an
    :class:`Example` (defaults filled in) or a held-out text — or ``None`` for a blank
    line; it raises :class:`InvalidDataset` naming the line (``where(number)``).
    ``claim`` remembers the ids seen so far: a dict for a push in memory, the spool
    file for a streamed one. :meth:`finish` checks the whole and returns the counts.
    """

    def __init__(self, claim: Claim, *, where: Where = _line, max_depth: int = MAX_DEPTH) -> None:
        self.generation = GenerationConfig()
        self.started = False  # a record was read: the generation is fixed from here on
        self._claim = claim
        self._where = where
        self._max_depth = max_depth
        self._counts = {"in": 0, "out": 0, "heldout": 0}

    def refuse(self, number: int, reason: str) -> InvalidDataset:
        return InvalidDataset(f"{self._where(number)}: {reason}")

    def read(self, number: int, line: str) -> GenerationConfig | Example | str | None:
        if not line.strip():
            return None
        obj = self._load(number, line)
        if "generation" in obj:
            if self.started:
                raise self.refuse(number, 'the "generation" record must be the first record')
            self.started = True
            self.generation = self._validate(GenerationRecord, obj, number, "generation").generation
            if self.generation.system is not None and not self.generation.chat_template:
                raise self.refuse(number, '"system" needs "chat_template": true')
            return self.generation
        self.started = True
        if "heldout" in obj:
            self._counts["heldout"] += 1
            return self._validate(HeldoutRecord, obj, number, "heldout").heldout
        record = self._validate(ExampleRecord, obj, number, "example")
        if record.messages is not None and not self.generation.chat_template:
            raise self.refuse(
                number,
                '"messages" need "chat_template": true in the generation record '
                "(they are rendered with the model's chat template)",
            )
        key = record.id if record.id is not None else str(number)
        first = self._claim(key, number)
        if first is not None:
            raise self.refuse(number, f'duplicate id "{key}" (first used on {self._where(first)})')
        fields = record.model_dump(exclude={"id", "input"})  # defaults filled in
        self._counts[record.domain] += 1
        return Example(id=key, input=record.prompt_text(), **fields)

    def finish(self) -> Counts:
        """The counts; raises :class:`InvalidDataset` when the push holds no example."""
        counts = Counts(
            n_examples=self._counts["in"] + self._counts["out"],
            n_in_domain=self._counts["in"],
            n_out_domain=self._counts["out"],
            n_heldout=self._counts["heldout"],
        )
        if not counts.n_examples:
            raise InvalidDataset('the dataset has no examples (records with "input" or "messages")')
        return counts

    def _load(self, number: int, line: str) -> JSONObject:
        try:
            obj = json.loads(line, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise self.refuse(number, f"not valid JSON: {exc.msg} (col {exc.colno})") from exc
        except ValueError as exc:
            raise self.refuse(number, f"not valid JSON: {exc}") from exc
        except RecursionError as exc:  # far deeper than any limit: the parser gave up
            raise self.refuse(number, _too_deep(self._max_depth)) from exc
        if not isinstance(obj, dict):
            raise self.refuse(number, f"each line must be a JSON object, not {_json_kind(obj)}")
        try:
            _check_values(obj, self._max_depth)
        except ValueError as exc:
            raise self.refuse(number, str(exc)) from exc
        return obj

    def _validate(self, model: type[_R], obj: JSONObject, number: int, kind: str) -> _R:
        try:
            return model.model_validate(obj)
        except ValidationError as exc:
            reasons = "; ".join(describe(error, kind) for error in exc.errors())
            raise self.refuse(number, reasons) from exc


def parse_dataset(
    body: bytes, *, where: Where = _line, max_depth: int = MAX_DEPTH
) -> ParsedDataset:
    """Validate a JSONL push held in memory; raises :class:`InvalidDataset` naming the
    first bad line (``where(line number)``: how a refusal names it)."""
    first_line: dict[str, int] = {}

    def claim(key: str, number: int) -> int | None:
        first = first_line.setdefault(key, number)
        return None if first == number else first

    reader = RecordReader(claim, where=where, max_depth=max_depth)
    examples: list[Example] = []
    heldout: list[str] = []
    for number, line in _lines(body):
        got = reader.read(number, line)
        if isinstance(got, Example):
            examples.append(got)
        elif isinstance(got, str):
            heldout.append(got)
    reader.finish()
    return ParsedDataset(generation=reader.generation, examples=examples, heldout=heldout)
