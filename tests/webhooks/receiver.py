"""A real local HTTP receiver for webhook tests: records every request, answers from a
script of status codes (then 200), and checks signatures like a user's endpoint would."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def signed_by(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Tunegate-Signature", ""), expected)


@dataclass
class Receiver:
    url: str
    answers: list[int]
    requests: list[Received] = field(default_factory=list)

    def wait_for(self, n: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.requests) >= n, f"{len(self.requests)} requests, wanted {n}"
        return self.requests


@contextmanager
def receiver(answers: Sequence[int] = ()) -> Iterator[Receiver]:
    """``with receiver([500, 500]) as r:`` — fails twice, then answers 200."""
    state = Receiver(url="", answers=list(answers))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.requests.append(Received(dict(self.headers.items()), body))
                code = state.answers.pop(0) if state.answers else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def settled_log(
    get: Callable[..., Any], hook_id: int, *, timeout: float = 30.0, **kwargs: Any
) -> dict[str, Any]:
    """The webhook's delivery log once no delivery is pending any more.

    The receiver sees a request before the sender has recorded the answer to it, so a test
    that reads the log right after :meth:`Receiver.wait_for` must wait for the record.
    ``get`` is the test's HTTP client's ``get`` (TestClient or httpx), ``kwargs`` its headers.
    """
    deadline = time.monotonic() + timeout
    while True:
        log: dict[str, Any] = get(f"/v1/webhooks/{hook_id}/deliveries", **kwargs).json()
        if all(d["status"] != "pending" for d in log["items"]) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)
