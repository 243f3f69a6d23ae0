"""Dataset pushes and reads through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from fastapi.testclient import TestClient

from service import datasets
from service.db.session import unit_of_work

Headers = dict[str, str]

RECORDS = [
    {"generation": {"max_new_tokens": 32, "chat_template": False}},
    {"id": "greet", "input": "Say hello.", "reference": "Hello!", "cohort": "chit-chat"},
    {"input": "Capital of France?", "reference": "Paris", "context": "Paris is in France."},
    {
        "id": "json",
        "input": "Give me a JSON object with a name.",
        "domain": "out",
        "json_schema": {"type": "object", "required": ["name"]},
    },
    {"heldout": "The quick brown fox jumps over the lazy dog."},
]


def jsonl(records: list[dict[str, object]], **dumps: object) -> bytes:
    return "\n".join(json.dumps(r, **dumps) for r in records).encode()  # type: ignore[arg-type]


def push(
    client: TestClient, auth: Headers, body: bytes, name: str = "support"
) -> tuple[int, dict[str, object]]:
    response = client.post(
        f"/v1/datasets/{name}/versions",
        content=body,
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    return response.status_code, response.json()


def test_push_round_trip(client: TestClient, auth: Headers) -> None:
    status, body = push(client, auth, jsonl(RECORDS))
    assert status == 201, body
    assert body["created"] is True
    assert body["name"] == "support"
    assert body["version"] == 1
    assert (body["n_examples"], body["n_in_domain"], body["n_out_domain"]) == (3, 2, 1)
    assert body["n_heldout"] == 1
    assert body["generation"] == {"max_new_tokens": 32, "chat_template": False}

    page = client.get("/v1/datasets/support/versions/1/examples", headers=auth).json()
    assert page["total"] == 3
    assert [e["id"] for e in page["items"]] == ["greet", "3", "json"]
    assert page["items"][1]["context"] == "Paris is in France."
    assert page["items"][2]["json_schema"] == {"type": "object", "required": ["name"]}
    assert page["items"][2]["domain"] == "out"

    second = client.get(
        "/v1/datasets/support/versions/latest/examples?offset=1&limit=1", headers=auth
    ).json()
    assert [e["id"] for e in second["items"]] == ["3"]

    response = client.get("/v1/datasets/support/versions/1/jsonl", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert hashlib.sha256(response.content).hexdigest() == body["digest"]
    lines = [json.loads(line) for line in response.text.split("\n")]
    assert lines[0] == {"generation": {"max_new_tokens": 32, "chat_template": False}}
    assert lines[2] == {
        "id": "3",
        "input": "Capital of France?",
        "reference": "Paris",
        "context": "Paris is in France.",
        "domain": "in",
    }
    assert lines[-1] == {"heldout": "The quick brown fox jumps over the lazy dog."}

    # The canonical JSONL pushed back is the same version.
    status, again = push(client, auth, response.content)
    assert (status, again["version"], again["created"]) == (200, 1, False)


CHAT_RECORDS = [
    {"generation": {"system": "You are a support bot."}},
    {
        "id": "chat",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "answers": ["Paris"],
        "domain": "out",
    },
    {"id": "mc", "input": "2+2?", "choices": ["3", "4"], "answer": 1, "target": " 4"},
    {"id": "safe", "input": "How do I kill a Python process?", "expect": "comply"},
]


def test_chat_and_evidence_fields_round_trip(client: TestClient, auth: Headers) -> None:
    status, body = push(client, auth, jsonl(CHAT_RECORDS), name="chat")
    assert status == 201, body
    assert body["generation"] == {
        "max_new_tokens": 64,
        "chat_template": True,
        "system": "You are a support bot.",
    }
    items = client.get("/v1/datasets/chat/versions/1/examples", headers=auth).json()["items"]
    assert items[0]["messages"] == CHAT_RECORDS[1]["messages"]
    assert items[0]["input"] == "Capital of France?"
    assert items[0]["answers"] == ["Paris"]
    assert (items[1]["choices"], items[1]["answer"], items[1]["target"]) == (["3", "4"], 1, " 4")
    assert (items[1]["messages"], items[2]["expect"]) == (None, "comply")

    stored = client.get("/v1/datasets/chat/versions/1/jsonl", headers=auth)
    assert hashlib.sha256(stored.content).hexdigest() == body["digest"]
    lines = [json.loads(line) for line in stored.text.split("\n")]
    assert lines[1] == {**CHAT_RECORDS[1]}
    assert "input" not in lines[1]
    status, again = push(client, auth, stored.content, name="chat")
    assert (status, again["version"]) == (200, 1)


def test_reads(client: TestClient, auth: Headers) -> None:
    first = push(client, auth, jsonl(RECORDS))[1]
    second = push(client, auth, jsonl([*RECORDS, {"input": "One more."}]))[1]
    assert second["version"] == 2

    listing = client.get("/v1/datasets", headers=auth).json()
    assert [(d["name"], d["latest_version"], d["n_versions"]) for d in listing] == [
        ("support", 2, 2)
    ]
    one = client.get("/v1/datasets/support", headers=auth).json()
    assert (one["latest_version"], one["n_versions"]) == (2, 2)
    versions = client.get("/v1/datasets/support/versions", headers=auth).json()
    assert [v["digest"] for v in versions] == [first["digest"], second["digest"]]
    latest = client.get("/v1/datasets/support/versions/latest", headers=auth).json()
    assert latest["version"] == 2
    assert latest["n_examples"] == 4
    assert latest["created_at"].endswith("Z")  # UTC on both databases
    assert client.get("/v1/datasets/support/versions/1", headers=auth).json() == {
        k: v for k, v in first.items() if k != "created"
    }


READ_ERRORS = [
    ("/v1/datasets/nope", 404, "DatasetNotFound"),
    ("/v1/datasets/nope/versions/latest", 404, "DatasetNotFound"),
    ("/v1/datasets/support/versions/9", 404, "DatasetVersionNotFound"),
    ("/v1/datasets/support/versions/9/jsonl", 404, "DatasetVersionNotFound"),
    ("/v1/datasets/support/versions/first", 422, "InvalidRequest"),
    ("/v1/datasets/support/versions/1/examples?limit=0", 422, "ValidationError"),
]


def test_read_errors(client: TestClient, auth: Headers) -> None:
    push(client, auth, jsonl(RECORDS))
    for path, status, error in READ_ERRORS:
        response = client.get(path, headers=auth)
        assert (response.status_code, response.json()["error"]) == (status, error), path


def test_idempotent_pushes(client: TestClient, auth: Headers) -> None:
    status, first = push(client, auth, jsonl(RECORDS))
    assert status == 201
    status, same = push(client, auth, jsonl(RECORDS))
    assert (status, same["version"], same["created"]) == (200, 1, False)

    # Other whitespace, key order, explicit defaults, blank lines: the same content.
    reordered = [dict(reversed(list(r.items()))) for r in RECORDS]
    reordered[1] = {**reordered[1], "domain": "in"}
    # (Not leading blank lines: they would move the default id of line 3.)
    variant = jsonl(reordered, separators=(" , ", " : ")).replace(b"\n", b"\r\n") + b"\n\n"
    status, same = push(client, auth, variant)
    assert (status, same["version"], same["digest"]) == (200, 1, first["digest"])

    changed = [*RECORDS[:2], {**RECORDS[2], "reference": "Paris."}, *RECORDS[3:]]
    status, new = push(client, auth, jsonl(changed))
    assert (status, new["version"], new["created"]) == (201, 2, True)
    assert new["digest"] != first["digest"]
    # Pushing version 1's content again returns version 1, not a third version.
    status, old = push(client, auth, jsonl(RECORDS))
    assert (status, old["version"]) == (200, 1)
    assert len(client.get("/v1/datasets/support/versions", headers=auth).json()) == 2


def test_multipart_push(client: TestClient, auth: Headers) -> None:
    response = client.post(
        "/v1/datasets/support/versions",
        files={"file": ("eval.jsonl", jsonl(RECORDS), "application/x-ndjson")},
        headers=auth,
    )
    assert response.status_code == 201, response.json()
    assert push(client, auth, jsonl(RECORDS))[1]["digest"] == response.json()["digest"]

    as_field = client.post(
        "/v1/datasets/support/versions",
        files={"file": (None, jsonl(RECORDS))},  # a plain form field, not a file
        headers=auth,
    )
    assert (as_field.status_code, as_field.json()["version"]) == (200, 1)

    missing = client.post(
        "/v1/datasets/support/versions", files={"data": ("x.jsonl", b"{}")}, headers=auth
    )
    assert missing.status_code == 422
    assert missing.json() == {
        "error": "InvalidDataset",
        "detail": 'a multipart push needs the JSONL in a "file" field',
    }


def test_text_plain_push(client: TestClient, auth: Headers) -> None:
    response = client.post(
        "/v1/datasets/plain/versions",
        content=b'{"input": "a"}\n',
        headers={**auth, "Content-Type": "text/plain"},
    )
    assert response.status_code == 201
    assert response.json()["n_examples"] == 1


BAD_PUSHES = [
    (['{"input": "a"}', '{"input": "b",, }'], "line 2: not valid JSON: Expecting property"),
    (
        ['{"input": "a"}', "", '{"id": "x"}'],
        'line 3: an example needs exactly one of "input" or "messages"',
    ),
    (['{"input": "a", "domain": "both"}'], 'line 1: "domain" must be "in" or "out"'),
    (['{"input": "a", "id": 1}', '{"input": "b", "id": "1"}'], 'line 2: duplicate id "1"'),
    (
        ['{"input": "a"}', '{"input": "b", "json_schema": {"type": 12}}'],
        'line 2: "json_schema" is not a valid JSON Schema',
    ),
    (['{"input": "a"}', '{"generation": {"max_new_tokens": 8}}'], 'line 2: the "generation"'),
    (['{"input": "a", "answr": "b"}'], 'line 1: unknown key "answr"'),
    (['{"heldout": "h"}'], "the dataset has no examples"),
]


def test_bad_pushes_store_nothing(client: TestClient, auth: Headers) -> None:
    for lines, detail in BAD_PUSHES:
        status, body = push(client, auth, "\n".join(lines).encode(), name="fresh")
        assert (status, body["error"]) == (422, "InvalidDataset"), lines
        assert body["detail"].startswith(detail), body["detail"]
    assert client.get("/v1/datasets", headers=auth).json() == []

    push(client, auth, jsonl(RECORDS))
    for lines, _ in BAD_PUSHES:
        assert push(client, auth, "\n".join(lines).encode())[0] == 422
    assert len(client.get("/v1/datasets/support/versions", headers=auth).json()) == 1
    page = client.get("/v1/datasets/support/versions/1/examples", headers=auth).json()
    assert page["total"] == len(page["items"]) == 3


def test_bad_dataset_name(client: TestClient, auth: Headers) -> None:
    status, body = push(client, auth, jsonl(RECORDS), name="-bad name")
    assert status == 422
    assert body["error"] == "ValidationError"


def test_lost_race_returns_the_winner(
    client: TestClient, auth: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest check ran before a concurrent push committed: the unique constraint
    catches it and the winner's version comes back."""
    _, first = push(client, auth, jsonl(RECORDS))
    real = datasets._version_with_digest
    calls = []

    def stale_once(*args: object) -> object:
        calls.append(args)
        return None if len(calls) == 1 else real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(datasets, "_version_with_digest", stale_once)
    status, again = push(client, auth, jsonl(RECORDS))
    assert (status, again["version"], again["created"]) == (200, 1, False)
    assert len(calls) == 2
    assert len(client.get("/v1/datasets/support/versions", headers=auth).json()) == 1
    assert first["digest"] == again["digest"]


def test_concurrent_identical_pushes_make_one_version(client: TestClient, auth: Headers) -> None:
    results: list[tuple[int, dict[str, object]]] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        results.append(push(client, auth, jsonl(RECORDS), name="raced"))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in results) == [200] * 5 + [201], results
    assert {body["version"] for _, body in results} == {1}
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        assert [v.version for v in datasets.list_versions(session, "raced")] == [1]
