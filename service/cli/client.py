"""The HTTP client the CLI's client commands (and the demo) use to talk to a tunegate server.

Where it connects: ``--url`` > ``TUNEGATE_URL`` > ``http://127.0.0.1:8080``. Which token it
sends: ``--token`` > ``TUNEGATE_TOKEN`` > the embedded server's local admin token file
(``<data_dir>/admin.token``, written on the server's first start), so the local path needs
no set-up.

Retries: a network error or a 5xx answer is retried with exponential backoff. A request
that registers something carries an ``Idempotency-Key`` that is generated once, before the
first attempt, and sent unchanged with every retry, so a retry whose first attempt did reach
the server is answered with the first registration instead of a second one.

Every failure is raised as :class:`ClientError`, which the commands print as one line.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.aliases import PRODUCTION

DEFAULT_URL = "http://127.0.0.1:8080"
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class ClientError(Exception):
    """A failed client operation: what failed, why, and (if known) what to do about it."""

    def __init__(
        self,
        what: str,
        why: str,
        fix: str | None = None,
        *,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        self.what, self.why, self.fix = what, why, fix
        self.status, self.error = status, error
        super().__init__(self.line())

    def line(self) -> str:
        """The one line printed for this error."""
        text = f"{self.what}: {self.why}"
        return f"{text} — {self.fix}" if self.fix else text


def new_idempotency_key() -> str:
    return f"tg-cli-{uuid.uuid4().hex}"


def resolve_url(url: str | None) -> str:
    """``--url`` > ``TUNEGATE_URL`` > the default local address, without a trailing slash."""
    return (url or os.environ.get("TUNEGATE_URL") or DEFAULT_URL).rstrip("/")


def resolve_token(token: str | None) -> str | None:
    """``--token`` > ``TUNEGATE_TOKEN`` > the local admin token file of the configured data dir."""
    if token:
        return token
    if os.environ.get("TUNEGATE_TOKEN"):
        return os.environ["TUNEGATE_TOKEN"]
    from service.settings import Settings

    path = Settings().admin_token_file
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _explain(method: str, path: str, response: httpx.Response) -> ClientError:
    """Turn a non-2xx answer into a ClientError using the server's ``{error, detail}`` body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        error, detail = str(body["error"]), str(body.get("detail", ""))
    else:
        error, detail = f"HTTP {response.status_code}", response.text.strip()[:300]
    fix = None
    if response.status_code == 401:
        fix = (
            "pass --token or set TUNEGATE_TOKEN (create one with `tunegate token create "
            "--scope submit` on the server)"
        )
    elif response.status_code == 403:
        fix = "use a token with a wider scope"
    elif response.status_code >= 500:
        fix = "see the server log"
    return ClientError(
        f"{method} {path} failed",
        f"{error}: {detail}",
        fix,
        status=response.status_code,
        error=error,
    )


@dataclass
class RetryPolicy:
    """How often and how patiently to retry network errors and 5xx answers."""

    attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_seconds * 2**attempt, self.max_backoff_seconds))


class TunegateClient:
    """A thin, typed wrapper over the REST API (JSON in, JSON out)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = resolve_url(url)
        self.token = resolve_token(token)
        self.retry = retry or RetryPolicy()
        headers = {"User-Agent": "tunegate-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TunegateClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- transport -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send a request, retrying network errors and 5xx; return the decoded JSON body.

        Raises :class:`ClientError` when the server cannot be reached after every attempt
        or answers with an error.
        """
        all_headers = dict(headers or {})
        if idempotency_key:
            all_headers["Idempotency-Key"] = idempotency_key
        last_network_error: httpx.TransportError | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                time.sleep(self.retry.delay(attempt - 1))
            try:
                response = self._http.request(method, path, headers=all_headers, **kwargs)
            except httpx.TransportError as exc:
                last_network_error = exc
                continue
            if response.status_code in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                continue
            if response.is_error:
                raise _explain(method, path, response)
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise ClientError(
                    f"{method} {path} failed", "the server answered with something not JSON"
                ) from exc
        raise ClientError(
            f"cannot reach the tunegate server at {self.url}",
            f"{type(last_network_error).__name__}: {last_network_error}",
            "start it with `tunegate serve`, or point --url / TUNEGATE_URL at a running one",
        ) from last_network_error

    # ---- resources -------------------------------------------------------------------

    def push_dataset(self, name: str, body: bytes) -> dict[str, Any]:
        """Push JSONL; the same content returns the same (content-addressed) version."""
        result: dict[str, Any] = self.request(
            "POST",
            f"/v1/datasets/{name}/versions",
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
        )
        return result

    def get_dataset_version(self, name: str, version: str = "latest") -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/datasets/{name}/versions/{version}")
        return result

    def create_family(
        self, name: str, base_model: str, policy: str | None = None
    ) -> dict[str, Any]:
        """Create a family; ``policy`` is JSON/YAML text (default: the shipped policy)."""
        body: dict[str, Any] = {"name": name, "base_model": base_model}
        if policy is not None:
            body["policy"] = policy
        result: dict[str, Any] = self.request("POST", "/v1/families", json=body)
        return result

    def put_policy(self, family: str, text: str) -> dict[str, Any]:
        """Replace a family's gate policy with JSON or YAML text (a new policy version)."""
        result: dict[str, Any] = self.request(
            "PUT",
            f"/v1/families/{family}/policy",
            content=text.encode("utf-8"),
            headers={"Content-Type": "application/yaml"},
        )
        return result

    def get_family(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/families/{name}")
        return result

    def register_candidate(self, metadata: Mapping[str, Any], key: str) -> dict[str, Any]:
        """Register a candidate by path (the server reads the folder)."""
        result: dict[str, Any] = self.request(
            "POST", "/v1/candidates", json=dict(metadata), idempotency_key=key
        )
        return result

    def upload_candidate(
        self,
        archive: Path,
        metadata: Mapping[str, Any],
        key: str,
        training_log: Path | None = None,
    ) -> dict[str, Any]:
        """Register a candidate by uploading a tar.gz of its folder (multipart)."""
        import json

        # bytes, not open files: every retry resends the whole archive from its start
        files: dict[str, Any] = {
            "archive": (archive.name, archive.read_bytes(), "application/gzip")
        }
        if training_log is not None:
            files["training_log"] = (training_log.name, training_log.read_bytes(), "text/plain")
        result: dict[str, Any] = self.request(
            "POST",
            "/v1/candidates/upload",
            files=files,
            data={"metadata": json.dumps(dict(metadata))},
            idempotency_key=key,
            timeout=httpx.Timeout(60.0, read=900.0),  # the server hashes and unpacks it first
        )
        return result

    def get_evaluation(self, evaluation_id: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/evaluations/{evaluation_id}")
        return result

    def get_decision(self, decision_id: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/decisions/{decision_id}")
        return result

    def decision_for_evaluation(self, evaluation_id: int | str) -> dict[str, Any]:
        """The gate decision of a finished evaluation (the server computes it if missing)."""
        result: dict[str, Any] = self.request(
            "GET", "/v1/decisions", params={"evaluation_id": evaluation_id}
        )
        return result

    def get_sweep(self, family: str, sweep: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/sweeps/{family}/{sweep}")
        return result

    def promote(
        self,
        family: str,
        candidate_id: int | str,
        *,
        alias: str = PRODUCTION,
        reason: str | None = None,
        override: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"candidate_id": candidate_id, "alias": alias, "override": override}
        if reason:
            body["reason"] = reason
        result: dict[str, Any] = self.request("POST", f"/v1/families/{family}/promote", json=body)
        return result

    def promotions(self, family: str) -> list[dict[str, Any]]:
        result: Any = self.request("GET", "/v1/promotions", params={"family": family})
        if isinstance(result, dict):  # a paged envelope
            result = result.get("items", result.get("promotions", []))
        return [dict(item) for item in result or []]
