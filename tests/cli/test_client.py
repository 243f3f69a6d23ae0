"""The HTTP client against a live server: retries never register twice; errors are one line."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.cli.client import ClientError, RetryPolicy, TunegateClient
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
    return list(rows)


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
    assert [row["id"] for row in rows] == [candidate["id"]]


def test_5xx_is_retried(live_server: LiveServer) -> None:
    transport = FailTwice()
    with TunegateClient(live_server.url, live_server.token, retry=FAST, transport=transport) as c:
        version = c.get_dataset_version("ds")
    assert version["name"] == "ds"
    assert transport.calls == 3


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
    assert candidate["source"] == "upload"
    assert "outside the allowed roots" in refused.value.why
