"""The dataset format's chat and evidence fields: ``messages``, ``answers``, ``choices`` +
``answer``, ``target``, ``expect`` and the dataset-wide ``system`` prompt."""

from __future__ import annotations

import json

import pytest

from service.dataset_format import parse_dataset
from service.errors import InvalidDataset

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Capital of France?"},
]


def jsonl(*records: object) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


# An old dataset (no new field anywhere) and its digest before the format gained them.
OLD_DATASET = jsonl(
    {"generation": {"max_new_tokens": 32, "chat_template": True}},
    {"id": "a", "input": "What is 2+2?", "reference": "4", "cohort": "math"},
    {"id": "b", "input": "Name a colour", "domain": "out", "context": "Red is a colour."},
    {"id": "c", "input": "Give JSON", "json_schema": {"type": "object"}},
    {"heldout": "Some held-out text."},
)
OLD_DIGEST = "01678c09f0ed7aaf957cd53c9ba2b6dcf9771d57554c3dbb080e207e328821ff"  # main@32ee37a


def test_an_old_datasets_digest_is_unchanged() -> None:
    parsed = parse_dataset(OLD_DATASET)
    assert parsed.digest == OLD_DIGEST
    assert parsed.canonical.split("\n")[0] == (
        '{"generation":{"chat_template":true,"max_new_tokens":32}}'
    )


def test_messages_record() -> None:
    parsed = parse_dataset(jsonl({"id": "m", "messages": CHAT, "reference": "Paris"}))
    [example] = parsed.examples
    assert example.messages == CHAT
    assert example.input == "Capital of France?"  # the last user turn, for scorers
    record = json.loads(parsed.canonical.split("\n")[1])
    assert record == {"id": "m", "domain": "in", "messages": CHAT, "reference": "Paris"}
    assert "input" not in record


def test_messages_digest_is_stable_under_key_order() -> None:
    shuffled = [{"content": m["content"], "role": m["role"]} for m in CHAT]
    a = parse_dataset(jsonl({"id": "m", "messages": CHAT, "answers": ["Paris"]}))
    b = parse_dataset(jsonl({"answers": ["Paris"], "messages": shuffled, "id": "m"}))
    assert a.digest == b.digest
    # the conversation is content: another turn order is another version
    swapped = [CHAT[0], CHAT[3], CHAT[2], CHAT[1]]
    c = parse_dataset(jsonl({"id": "m", "messages": swapped, "answers": ["Paris"]}))
    assert c.digest != a.digest


def test_evidence_fields_round_trip_into_the_canonical_record() -> None:
    record = {
        "id": "q",
        "input": "Which is a fruit?",
        "answers": ["apple", "an apple"],
        "choices": ["stone", "apple", "car"],
        "answer": 1,
        "target": " An apple is a fruit.",
        "expect": "comply",
        "domain": "out",
    }
    parsed = parse_dataset(jsonl(record))
    [example] = parsed.examples
    assert (example.answers, example.choices, example.answer) == (
        ["apple", "an apple"],
        ["stone", "apple", "car"],
        1,
    )
    assert (example.target, example.expect) == (" An apple is a fruit.", "comply")
    assert json.loads(parsed.canonical.split("\n")[1]) == record
    # absent optional fields are dropped, not written as null
    plain = parse_dataset(jsonl({"id": "q", "input": "x"})).canonical
    assert "null" not in plain
    assert "answers" not in plain


def test_each_field_changes_the_digest() -> None:
    base = {"id": "q", "input": "x"}
    variants = [
        {"answers": ["a"]},
        {"choices": ["a", "b"], "answer": 0},
        {"choices": ["a", "b"], "answer": 1},
        {"target": "t"},
        {"expect": "refuse"},
        {"expect": "comply"},
    ]
    digests = {parse_dataset(jsonl(base)).digest}
    digests |= {parse_dataset(jsonl({**base, **extra})).digest for extra in variants}
    assert len(digests) == len(variants) + 1


def test_system_prompt_in_the_generation_record() -> None:
    parsed = parse_dataset(
        jsonl({"generation": {"system": "You are a support bot."}}, {"input": "x"})
    )
    assert parsed.generation.system == "You are a support bot."
    assert parsed.canonical.split("\n")[0] == (
        '{"generation":{"chat_template":true,"max_new_tokens":64,'
        '"system":"You are a support bot."}}'
    )
    assert parsed.generation.stored()["system"] == "You are a support bot."
    without = parse_dataset(jsonl({"input": "x"}))
    assert "system" not in without.generation.stored()
    assert without.digest != parsed.digest


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "q"}, 'line 2: an example needs exactly one of "input" or "messages"'),
        (
            {"input": "x", "messages": CHAT},
            'line 2: an example needs exactly one of "input" or "messages"',
        ),
        ({"messages": []}, 'line 2: "messages" must hold at least 1 item'),
        ({"messages": "hi"}, 'line 2: "messages" must be a JSON array'),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            'line 2: the last of "messages" must be the user\'s',
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
            'line 2: the last of "messages" must be the user\'s',
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "system", "content": "b"},
                    {"role": "user", "content": "c"},
                ]
            },
            'line 2: a "system" message may only be the first of "messages"',
        ),
        (
            {"messages": [{"role": "tool", "content": "a"}]},
            'line 2: "messages.0.role" must be "system", "user" or "assistant"',
        ),
        ({"messages": [{"role": "user", "content": ""}]}, '"messages.0.content" must not be empty'),
        (
            {"messages": [{"role": "user", "content": "a", "name": "x"}]},
            'line 2: unknown key "messages.0.name" in an example record (known: "role", "content")',
        ),
        ({"input": "x", "answers": []}, 'line 2: "answers" must hold at least 1 item'),
        ({"input": "x", "answers": "Paris"}, 'line 2: "answers" must be a JSON array'),
        ({"input": "x", "answers": ["Paris", ""]}, '"answers.1" must not be empty'),
        ({"input": "x", "answers": [1]}, 'line 2: "answers.0" must be a string'),
        ({"input": "x", "choices": ["a"], "answer": 0}, '"choices" must hold at least 2 items'),
        ({"input": "x", "choices": ["a", "b"]}, 'line 2: "choices" and "answer" go together'),
        ({"input": "x", "answer": 0}, 'line 2: "choices" and "answer" go together'),
        (
            {"input": "x", "choices": ["a", "b"], "answer": 2},
            'line 2: "answer" 2 is not an index of "choices" (0 to 1)',
        ),
        ({"input": "x", "choices": ["a", "b"], "answer": -1}, '"answer" must be at least 0'),
        ({"input": "x", "choices": ["a", "b"], "answer": "1"}, '"answer" must be an integer'),
        ({"input": "x", "choices": ["a", "b"], "answer": True}, '"answer" must be an integer'),
        ({"input": "x", "target": ""}, 'line 2: "target" must not be empty'),
        ({"input": "x", "expect": "maybe"}, 'line 2: "expect" must be "refuse" or "comply"'),
    ],
)
def test_bad_records_are_refused_with_their_line(record: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidDataset) as caught:
        parse_dataset(jsonl({"input": "fine"}, record))
    assert message in str(caught.value)


def test_chat_fields_need_the_chat_template() -> None:
    with pytest.raises(InvalidDataset, match='line 1: "system" needs "chat_template": true'):
        parse_dataset(
            jsonl({"generation": {"chat_template": False, "system": "s"}}, {"input": "x"})
        )
    with pytest.raises(InvalidDataset, match='line 2: "messages" need "chat_template": true'):
        parse_dataset(jsonl({"generation": {"chat_template": False}}, {"messages": CHAT}))
