"""The dataset JSONL format: validation messages, defaults, canonical form and digest."""

from __future__ import annotations

import hashlib
import json

import pytest

from service.dataset_format import parse_dataset
from service.datasets import parse_version_ref
from service.errors import InvalidDataset, InvalidRequest


def jsonl(*records: object) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


def test_defaults_are_filled_in() -> None:
    parsed = parse_dataset(
        jsonl({"input": "a"}, "", {"id": "q", "input": "b", "domain": "out"}, {"heldout": "h"})
    )
    assert [(e.id, e.domain) for e in parsed.examples] == [("1", "in"), ("q", "out")]
    assert parsed.heldout == ["h"]
    assert parsed.generation.max_new_tokens == 64
    assert parsed.generation.chat_template is True


def test_integer_ids_become_text() -> None:
    assert parse_dataset(jsonl({"id": 7, "input": "a"})).examples[0].id == "7"


def test_canonical_form_and_digest() -> None:
    parsed = parse_dataset(
        jsonl({"heldout": "h"}, {"reference": "r", "input": "a", "json_schema": {"type": "object"}})
    )
    lines = parsed.canonical.split("\n")
    assert lines == [
        '{"generation":{"chat_template":true,"max_new_tokens":64}}',
        '{"domain":"in","id":"2","input":"a","json_schema":{"type":"object"},"reference":"r"}',
        '{"heldout":"h"}',
    ]
    assert parsed.digest == hashlib.sha256(parsed.canonical.encode()).hexdigest()


def test_same_content_same_digest() -> None:
    """Whitespace, key order, escapes, CRLF, explicit defaults and held-out placement do not
    change the digest (explicit ids: a default id is the line number)."""
    a = parse_dataset(b'{"id": "x", "input": "\xc3\xa9t\xc3\xa9", "cohort": "c"}\n{"heldout": "h"}')
    b = parse_dataset(
        b'{"generation": {"max_new_tokens": 64}}\r\n{"heldout":"h"}\r\n'
        b'{"cohort":"c","domain":"in","input":"\\u00e9t\\u00e9","id":"x"}\r\n'
    )
    assert a.digest == b.digest
    assert "\u00e9t\u00e9" in a.canonical  # ensure_ascii=False
    assert parse_dataset(b'{"id": "x", "input": "ete", "cohort": "c"}').digest != a.digest


def test_generation_record_changes_the_digest() -> None:
    plain = parse_dataset(jsonl({"input": "a"}))
    short = parse_dataset(jsonl({"generation": {"max_new_tokens": 8}}, {"input": "a"}))
    assert short.generation.max_new_tokens == 8
    assert plain.digest != short.digest


#: (body, the refusal's start): shared with the streamed reader's test (test_dataset_spool.py).
BAD_LINES = [
    (
        jsonl({"input": "a"}, {"input": "b", "domain": "x"}),
        'line 2: "domain" must be "in" or "out"',
    ),
    (
        b'{"input": "a"}\n\n{"input": "b" "id": 1}',
        "line 3: not valid JSON: Expecting ',' delimiter (col 15)",
    ),
    (jsonl({"id": "a"}), 'line 1: an example needs exactly one of "input" or "messages"'),
    (jsonl({"input": ""}), 'line 1: "input" must not be empty'),
    (jsonl({"input": 3}), 'line 1: "input" must be a string'),
    (jsonl({"input": "a", "id": True}), 'line 1: "id" must be a string or an integer'),
    (
        jsonl({"input": "a", "id": "k"}, {"input": "b", "id": "k"}),
        'line 2: duplicate id "k" (first used on line 1)',
    ),
    (
        jsonl({"input": "a", "id": "2"}, {"input": "b"}),
        'line 2: duplicate id "2" (first used on line 1)',
    ),
    (
        jsonl({"input": "a", "json_schema": {"type": "nope"}}),
        'line 1: "json_schema" is not a valid JSON Schema',
    ),
    (jsonl({"input": "a", "json_schema": [1]}), 'line 1: "json_schema" must be a JSON object'),
    (
        jsonl({"input": "a"}, {"generation": {}}),
        'line 2: the "generation" record must be the first record',
    ),
    (
        jsonl({"generation": {"max_new_tokens": 0}}, {"input": "a"}),
        'line 1: "generation.max_new_tokens" must be at least 1',
    ),
    (
        jsonl({"generation": {"max_new_tokens": 4097}}, {"input": "a"}),
        'line 1: "generation.max_new_tokens" must be at most 4096',
    ),
    (
        jsonl({"generation": {"max_new_tokens": 8.0}}, {"input": "a"}),
        'line 1: "generation.max_new_tokens" must be an integer',
    ),
    (
        jsonl({"generation": {"chat_template": "yes"}}, {"input": "a"}),
        'line 1: "generation.chat_template" must be true or false',
    ),
    (
        jsonl({"generation": {"temperature": 0.7}}, {"input": "a"}),
        'line 1: unknown key "generation.temperature"',
    ),
    (jsonl({"input": "a", "answr": 1}), 'line 1: unknown key "answr" in an example record'),
    (
        jsonl({"input": "a"}, {"heldout": "h", "input": "b"}),
        'line 2: unknown key "input" in a heldout record',
    ),
    (jsonl({"input": "a"}, [1, 2]), "line 2: each line must be a JSON object, not an array"),
    (b'{"input": "a", "reference": NaN}', "line 1: not valid JSON: NaN is not allowed"),
    (b'{"input": "a\\u0000"}', "line 1: text must not contain NUL characters"),
    (b'{"input": "a"}\n{"input": "\xff"}', "line 2: not valid UTF-8"),
    (jsonl({"heldout": "only held-out text"}), "the dataset has no examples"),
    (b"\n\n", "the dataset has no examples"),
    (
        b'{"input": "a", "x": ' + b"[" * 64 + b"]" * 64 + b"}",
        "line 1: JSON nested deeper than 64 levels is refused",
    ),
    (
        b'{"input": "a"}\n{"input": "b", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "line 2: JSON nested deeper than 64 levels is refused",
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD_LINES)
def test_bad_lines_are_named(body: bytes, expected: str) -> None:
    with pytest.raises(InvalidDataset) as info:
        parse_dataset(body)
    assert info.value.detail.startswith(expected), info.value.detail
    assert info.value.status_code == 422


@pytest.mark.parametrize(("text", "ref"), [("latest", "latest"), ("1", 1), ("42", 42)])
def test_version_refs(text: str, ref: object) -> None:
    assert parse_version_ref(text) == ref


@pytest.mark.parametrize("text", ["0", "-1", "v1", "1.0", "²", "9999999999", ""])
def test_bad_version_refs(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_version_ref(text)
