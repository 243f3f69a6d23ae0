"""The HTTP client against a live server: retries never register twice; errors are one line."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import JsonValue

from service.api.schemas.candidates import CandidateSubmitted
from service.api.schemas.datasets import VersionOut
from service.api.schemas.families import FamilyOut
from service.api.schemas.sweeps import SweepOut
from service.cli.client import (
    CheckpointNotVisibleError,
    ClientError,
    GateNotPassedError,
    RetryPolicy,
    TunegateClient,
)
from service.cli.submission import CandidateRequest, submit_candidate
from tests.cli.conftest import LiveServer

FAST = RetryPolicy(attempts=4, backoff_seconds=0.05)


class LoseFirstResponse(httpx.BaseTransport):
    """Delivers every request, but "loses" the first answer to ``POST path``: the server did
    the work, the client sees a network error — the case an Idempotency-Key is for."""

    def __init__(self, path: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.path = path
        self.lost = 0
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == self.path:
            self.keys.append(request.headers.get("Idempotency-Key"))
            if not self.lost:
                self.lost += 1
                response.read()
                response.close()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


class FailTwice(httpx.BaseTransport):
    """Answers 503 twice without reaching the server, then passes requests through."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= 2:
            return httpx.Response(503, json={"error": "NotReady", "detail": "starting"})
        return self.inner.handle_request(request)


def _candidates(live: LiveServer, sweep: str) -> list[dict[str, object]]:
    with TunegateClient(live.url, live.token) as client:
        rows = client.request("GET", "/v1/candidates", params={"family": "tiny", "sweep": sweep})
    assert isinstance(rows, list)
    return [row for row in rows if isinstance(row, dict)]


def test_lost_response_is_retried_with_the_same_key_and_registers_once(
    live_server: LiveServer, full_copy: Path
) -> None:
    transport = LoseFirstResponse("/v1/candidates")
    request = CandidateRequest(
        checkpoint=full_copy, family="tiny", learning_rate=2e-4, sweep="retry", kind="full"
    )
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        candidate = submit_candidate(c, request)
    assert transport.lost == 1
    assert len(transport.keys) == 2
    assert transport.keys[0] == transport.keys[1] is not None
    rows = _candidates(live_server, "retry")
    assert [row["id"] for row in rows] == [candidate.id]


def test_5xx_is_retried(live_server: LiveServer) -> None:
    transport = FailTwice()
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        version = c.get_dataset_version("ds")
    assert version.name == "ds"
    assert transport.calls == 3


def test_a_dataset_file_is_streamed_again_on_retry(live_server: LiveServer, tmp_path: Path) -> None:
    """A JSONL file is sent as it is read (FileChunks), from its start on every attempt."""
    with TunegateClient(live_server.url, live_server.token) as client:
        stored = client.get_dataset_version("ds")
    jsonl = httpx.get(
        f"{live_server.url}/v1/datasets/ds/versions/{stored.version}/jsonl",
        headers={"Authorization": f"Bearer {live_server.token}"},
    ).content
    file = tmp_path / "again.jsonl"
    file.write_bytes(jsonl)
    transport = FailTwice()
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        pushed = c.push_dataset("ds", file)
    assert transport.calls == 3
    assert (pushed.created, pushed.version, pushed.digest) == (False, stored.version, stored.digest)


def test_server_errors_become_one_client_error(live_server: LiveServer) -> None:
    with TunegateClient(live_server.url, live_server.token, retry=FAST) as client:
        with pytest.raises(ClientError) as caught:
            client.get_family("no-such-family")
    assert caught.value.status == 404
    assert caught.value.error == "FamilyNotFound"
    assert "\n" not in caught.value.line()


def test_a_wrong_token_says_what_to_do(live_server: LiveServer) -> None:
    with TunegateClient(live_server.url, "tg_wrong", retry=FAST) as client:
        with pytest.raises(ClientError) as caught:
            client.get_family("tiny")
    assert caught.value.status == 401
    assert "TUNEGATE_TOKEN" in caught.value.line()


def test_path_the_server_cannot_see_is_uploaded(live_server: LiveServer, tmp_path: Path) -> None:
    """A folder outside the server's checkpoint roots is packed and uploaded instead."""
    import shutil

    outside = tmp_path / "elsewhere" / "model"
    shutil.copytree(live_server.tiny, outside)
    uploads: list[int] = []
    request = CandidateRequest(
        checkpoint=outside, family="tiny", learning_rate=5e-4, sweep="upload", kind="full"
    )
    with TunegateClient(live_server.url, live_server.token, retry=FAST) as client:
        candidate = submit_candidate(client, request, on_upload=lambda: uploads.append(1))
        with pytest.raises(ClientError) as refused:
            submit_candidate(client, request, upload=False)
    assert uploads == [1]
    assert candidate.source == "upload"
    assert "outside the allowed roots" in refused.value.why


class AnswerFirst(httpx.BaseTransport):
    """Answers the first ``POST path`` itself with ``status`` and ``body`` (what a server in
    another situation would say); every other request reaches the live server."""

    def __init__(self, path: str, status: int, body: dict[str, str]) -> None:
        self.inner = httpx.HTTPTransport()
        self.path, self.status, self.body = path, status, body
        self.posts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts.append(request.url.path)
            if len(self.posts) == 1 and request.url.path == self.path:
                return httpx.Response(self.status, json=self.body)
        return self.inner.handle_request(request)


def test_upload_is_decided_by_the_error_class_not_its_text(
    live_server: LiveServer, full_copy: Path
) -> None:
    """A refusal whose *text* reads like "not visible" is not uploaded; a CheckpointNotVisible
    whose text says nothing of the kind is."""
    request = CandidateRequest(
        checkpoint=full_copy, family="tiny", learning_rate=3e-4, sweep="by-class", kind="full"
    )
    looks_missing = {
        "error": "CheckpointRejected",
        "detail": f"checkpoint path {str(full_copy)!r} does not exist, outside the allowed roots",
    }
    transport = AnswerFirst("/v1/candidates", 422, looks_missing)
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        with pytest.raises(ClientError) as refused:
            submit_candidate(c, request)
    assert type(refused.value) is ClientError
    assert refused.value.error == "CheckpointRejected"
    assert transport.posts == ["/v1/candidates"]  # no upload

    not_visible = {"error": "CheckpointNotVisible", "detail": "no words a client should match"}
    transport = AnswerFirst("/v1/candidates", 422, not_visible)
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        candidate = submit_candidate(c, request)
    assert transport.posts == ["/v1/candidates", "/v1/candidates/upload"]
    assert isinstance(candidate, CandidateSubmitted)
    assert candidate.source == "upload"
    assert candidate.sweep == "by-class"

    transport = AnswerFirst("/v1/candidates", 422, not_visible)
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        with pytest.raises(CheckpointNotVisibleError):
            submit_candidate(c, request, upload=False)
    assert transport.posts == ["/v1/candidates"]


def test_server_error_names_map_to_client_error_classes(
    live_server: LiveServer, full_copy: Path
) -> None:
    meta: dict[str, JsonValue] = {"family": "tiny", "learning_rate": 1e-4, "sweep": "errors"}
    with TunegateClient(live_server.url, live_server.token, retry=FAST) as client:
        with pytest.raises(CheckpointNotVisibleError) as caught:
            client.register_candidate({**meta, "checkpoint": "/no/such/folder"}, "k-missing")
        never_evaluated = client.register_candidate(
            {**meta, "checkpoint": str(full_copy), "kind": "full"}, "k-unjudged"
        )
        with pytest.raises(GateNotPassedError) as refused:
            client.promote("tiny", never_evaluated.id)
    assert caught.value.status == 422
    assert caught.value.error == "CheckpointNotVisible"
    assert refused.value.status == 409
    assert refused.value.error == "GateNotPassed"


def test_answers_are_parsed_into_the_api_models(live_server: LiveServer) -> None:
    with TunegateClient(live_server.url, live_server.token, retry=FAST) as client:
        family = client.get_family("tiny")
        version = client.get_dataset_version("ds")
        sweep = client.get_sweep("tiny", "nothing-yet")
        history = client.promotions("tiny")
    assert isinstance(family, FamilyOut)
    assert family.name == "tiny"
    assert family.created_at.tzinfo is not None  # parsed, not a string
    assert isinstance(version, VersionOut)
    assert (version.n_in_domain, version.n_out_domain, version.n_heldout) == (6, 6, 2)
    assert isinstance(sweep, SweepOut)
    assert (sweep.rows, sweep.recommended_rate) == ([], None)
    assert history == []


class WrongShape(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"name": "tiny", "policy_version": "one"})


def test_an_answer_that_is_not_the_model_is_a_client_error() -> None:
    with TunegateClient("http://tunegate.invalid", "t", transport=WrongShape()) as client:
        with pytest.raises(ClientError) as caught:
            client.get_family("tiny")
    assert "not a FamilyOut" in caught.value.why
    assert "\n" not in caught.value.line()


class RaceThenBusy(httpx.BaseTransport):
    """A lost race (409 ConcurrentUpdate), then a saturated server (503 + Retry-After), then
    the real server; records the Idempotency-Key of every attempt."""

    def __init__(self, conflict: str = "ConcurrentUpdate") -> None:
        self.inner = httpx.HTTPTransport()
        self.conflict = conflict
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("Idempotency-Key"))
        if len(self.keys) == 1:
            return httpx.Response(409, json={"error": self.conflict, "detail": "raced"})
        if len(self.keys) == 2:
            body = {"error": "ServiceBusy", "detail": "busy"}
            return httpx.Response(503, json=body, headers={"Retry-After": "0.1"})
        return self.inner.handle_request(request)


def test_lost_race_and_503_are_retried_with_the_same_key(
    live_server: LiveServer, full_copy: Path
) -> None:
    transport = RaceThenBusy()
    request = CandidateRequest(
        checkpoint=full_copy, family="tiny", learning_rate=3e-4, sweep="race", kind="full"
    )
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        candidate = submit_candidate(c, request)
    assert len(transport.keys) == 3
    assert len(set(transport.keys)) == 1
    assert transport.keys[0] is not None
    assert [row["id"] for row in _candidates(live_server, "race")] == [candidate.id]


def test_other_conflicts_are_not_retried(live_server: LiveServer) -> None:
    transport = RaceThenBusy(conflict="IdempotencyKeyReused")
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        with pytest.raises(ClientError) as caught:
            c.get_dataset_version("ds")
    assert caught.value.status == 409
    assert len(transport.keys) == 1
