"""Limits every request body meets before any route sees it (a pure ASGI middleware).

- **Size**: a body over the limit is refused with 413 naming the limit and its
  setting — at once when ``Content-Length`` says so, otherwise as soon as the
  streamed bytes pass it (the route's answer is replaced; nothing it stored
  survives, see the unit of work). Checkpoint uploads and dataset pushes have their
  own, larger limits (:class:`BodyLimit`, chosen per request by ``limit_for``).
- **JSON depth**: JSON and JSON-lines bodies nested deeper than ``max_depth`` are
  refused with 422 while streaming, by a scanner that tracks only brackets and
  strings — so no parser ever recurses a hostile 100,000 levels. The same scan
  refuses ``\\u0000`` in a JSON string: PostgreSQL text and jsonb cannot hold NUL.
  A route that reads its body line by line and bounds each line itself (a dataset
  push, up to gigabytes) opts out: a per-byte scan in Python would cost it minutes.
- **Control characters** (NUL included) in the path or the query string: 422.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class JsonDepth:
    """Nesting depth of a JSON text fed in chunks (strings and escapes understood).

    ``has_nul`` turns true at a ``\\u0000`` escape inside a string.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.has_nul = False
        self._in_string = False
        self._escaped = False
        self._unicode = b""  # the hex digits after a \\u seen so far

    def feed(self, chunk: bytes) -> bool:
        """Scan ``chunk``; False as soon as the depth passes the limit or a NUL shows."""
        for byte in chunk:
            if self._in_string:
                if self._unicode:
                    self._unicode += bytes([byte])
                    if len(self._unicode) == 5:
                        if self._unicode == b"u0000":
                            self.has_nul = True
                            return False
                        self._unicode = b""
                elif self._escaped:
                    self._escaped = False
                    if byte == 0x75:  # u
                        self._unicode = b"u"
                elif byte == 0x5C:  # backslash
                    self._escaped = True
                elif byte == 0x22:  # quote
                    self._in_string = False
            elif byte == 0x22:
                self._in_string = True
            elif byte in (0x5B, 0x7B):  # [ {
                self.depth += 1
                if self.depth > self.limit:
                    return False
            elif byte in (0x5D, 0x7D) and self.depth > 0:
                self.depth -= 1
        return True


def json_depth_ok(text: str | bytes, limit: int) -> bool:
    """True when ``text`` nests at most ``limit`` levels of arrays/objects."""
    return JsonDepth(limit).feed(text.encode() if isinstance(text, str) else text)


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    detail: str


def _has_control(scope: Scope) -> bool:
    """Control characters (NUL included) in the decoded path or query string."""
    raw = unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" "))
    text = scope["path"].encode("utf-8", "surrogateescape") + raw
    return any(byte < 0x20 or byte == 0x7F for byte in text)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            kind: bytes = value.split(b";", 1)[0].strip().lower()
            return kind.endswith(b"json") or kind == b"application/x-ndjson"
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _mib(size: int) -> str:
    return f"{size} bytes ({size / 1024**2:g} MiB)"


@dataclass(frozen=True)
class BodyLimit:
    """The bound on one request's body."""

    max_bytes: int
    setting: str  # the TUNEGATE_* variable that sets it, named in the 413
    scan_json: bool = True  # False: the route bounds each JSON line itself


class BodyLimits:
    """ASGI middleware: ``limit_for(method, path)`` per body, ``max_depth`` JSON levels."""

    def __init__(
        self, app: ASGIApp, *, limit_for: Callable[[str, str], BodyLimit], max_depth: int
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bound = self.limit_for(scope["method"], scope["path"])
        limit = bound.max_bytes
        too_large = Refusal(
            413,
            "BodyTooLarge",
            f"the request body is larger than the limit of {_mib(limit)} ({bound.setting})",
        )
        if _has_control(scope):
            detail = "control characters (NUL included) are refused in the path and query string"
            await _refuse(send, Refusal(422, "InvalidRequest", detail))
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, too_large)
            return
        depth = JsonDepth(self.max_depth) if bound.scan_json and _is_json(scope) else None
        refusal: Refusal | None = None
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, refusal
            message = await receive()
            if message["type"] == "http.request" and refusal is None:
                body: bytes = message.get("body", b"")
                seen += len(body)
                if seen > limit:
                    refusal = too_large
                elif depth is not None and not depth.feed(body):
                    refusal = Refusal(
                        422,
                        "InvalidRequest",
                        "a JSON string holds \\u0000 (NUL), which cannot be stored"
                        if depth.has_nul
                        else f"JSON nested deeper than {self.max_depth} levels is refused",
                    )
                if refusal is not None:
                    raise BodyRefused(refusal.detail)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal is not None:
                return  # the route's answer is replaced by the refusal below
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyRefused:
            pass
        if refusal is not None and not started:
            await _refuse(send, refusal)


class BodyRefused(Exception):
    """Raised inside the app's body read to stop it; the middleware answers."""


async def _refuse(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"error": refusal.error, "detail": refusal.detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
