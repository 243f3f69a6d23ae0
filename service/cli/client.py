"""The HTTP client the CLI's client commands (and the demo) use to talk to a tunegate server.

Where it connects: ``--url`` > ``TUNEGATE_URL`` > ``http://127.0.0.1:8080``. Which token it
sends: ``--token`` > ``TUNEGATE_TOKEN`` > the embedded server's local admin token file
(``<data_dir>/admin.token``, written on the server's first start), so the local path needs
no set-up.

Retries: a network error or a 5xx answer is retried with exponential backoff (a 503 waits
at least its ``Retry-After``), and so is a 409 ``ConcurrentUpdate`` (a lost race). A request
that registers something carries an ``Idempotency-Key`` that is generated once, before the
first attempt, and sent unchanged with every retry, so a retry whose first attempt did reach
the server is answered with the first registration instead of a second one.

Answers are parsed into the API's own response models (:mod:`service.api.schemas`), so a
client reads attributes, never dict keys, and a body that does not match is an error at
once. Every failure is raised as :class:`ClientError`, which the commands print as one line;
a server error a client reacts to arrives as its own subclass, chosen by the error's class
name in the server's ``{"error": "<ClassName>", "detail": ...}`` body, never by its text.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import BaseModel, RootModel, TypeAdapter, ValidationError

from service import errors
from service.alias_names import PRODUCTION
from service.api.schemas.candidates import CandidateDetail, CandidateSubmitted
from service.api.schemas.common import ErrorOut
from service.api.schemas.datasets import PushedVersionOut, VersionOut
from service.api.schemas.decisions import DecisionOut, DiffPage
from service.api.schemas.evaluations import EvaluationDetail, EvaluationPage
from service.api.schemas.families import FamilyOut, PolicyChangeOut
from service.api.schemas.promotions import PromotionOut, PromotionPage
from service.api.schemas.sweeps import SweepOut
from service.jsontypes import JSONObject, JSONValue

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


class ServerUnreachableError(ClientError):
    """No answer from the server after every retry (connection refused, timeouts)."""


class CheckpointNotVisibleError(ClientError):
    """The server cannot see the checkpoint path (missing there, or outside its roots)."""


class GateNotPassedError(ClientError):
    """Promotion refused: the candidate has no passing gate decision."""


class InvalidTrainingLogError(ClientError):
    """The server refused the training log (not trainer_state.json or step JSONL, too short)."""


SERVER_ERRORS: dict[str, type[ClientError]] = {
    errors.CheckpointNotVisible.__name__: CheckpointNotVisibleError,
    errors.GateNotPassed.__name__: GateNotPassedError,
    errors.InvalidTrainingLog.__name__: InvalidTrainingLogError,
}
"""The server's error class name → the client error raised for it (others: ClientError)."""

ModelT = TypeVar("ModelT", bound=BaseModel)


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
        body = ErrorOut.model_validate_json(response.content)
        error, detail = body.error, body.detail
    except ValidationError:
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
    return SERVER_ERRORS.get(error, ClientError)(
        f"{method} {path} failed",
        f"{error}: {detail}",
        fix,
        status=response.status_code,
        error=error,
    )


def _retryable(response: httpx.Response) -> bool:
    """5xx, or a 409 for a lost race (by the error's class name, never its text)."""
    if response.status_code in RETRY_STATUSES:
        return True
    if response.status_code == 409:
        try:
            return bool(response.json().get("error") == "ConcurrentUpdate")
        except (ValueError, AttributeError):
            return False
    return False


def _retry_after(response: httpx.Response) -> float:
    """Seconds a 503 asks to wait (``Retry-After``, capped at a minute); 0 otherwise."""
    try:
        return min(float(response.headers.get("Retry-After", 0)), 60.0)
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class FileChunks:
    """A file as a request body: read in 1 MiB chunks, from the start on every attempt."""

    path: Path
    chunk: int = 1024**2

    def __iter__(self) -> Iterator[bytes]:
        with self.path.open("rb") as handle:
            while data := handle.read(self.chunk):
                yield data


@dataclass
class RetryPolicy:
    """How often and how patiently to retry network errors and 5xx answers."""

    attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_seconds * 2**attempt, self.max_backoff_seconds))


class TunegateClient:
    """A thin, typed wrapper over the REST API: JSON in, the API's response models out."""

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
        **kwargs: object,
    ) -> JSONValue:
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
                response = self._http.request(
                    method,
                    path,
                    headers=all_headers,
                    **kwargs,  # type: ignore[arg-type]  # httpx's keyword arguments, passed on
                )
            except httpx.TransportError as exc:
                last_network_error = exc
                continue
            if _retryable(response) and attempt + 1 < self.retry.attempts:
                time.sleep(_retry_after(response))
                continue
            if response.is_error:
                raise _explain(method, path, response)
            if not response.content:
                return None
            try:
                return TypeAdapter(JSONValue).validate_json(response.content)
            except ValidationError as exc:
                raise ClientError(
                    f"{method} {path} failed", "the server answered with something not JSON"
                ) from exc
        raise ServerUnreachableError(
            f"cannot reach the tunegate server at {self.url}",
            f"{type(last_network_error).__name__}: {last_network_error}",
            "start it with `tunegate serve`, or point --url / TUNEGATE_URL at a running one",
        ) from last_network_error

    def call(
        self,
        model: type[ModelT],
        method: str,
        path: str,
        *,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: object,
    ) -> ModelT:
        """:meth:`request`, with the answer parsed into ``model`` (a response schema).

        Raises :class:`ClientError` when the answer does not match the model.
        """
        body = self.request(
            method, path, idempotency_key=idempotency_key, headers=headers, **kwargs
        )
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise ClientError(
                f"{method} {path} failed",
                f"the answer is not a {model.__name__}: {exc.error_count()} field error(s), "
                f"first: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}",
                "the client and the server are different versions",
            ) from exc

    # ---- resources -------------------------------------------------------------------

    def push_dataset(self, name: str, body: bytes | Path | Iterable[bytes]) -> PushedVersionOut:
        """Push JSONL — bytes, a file sent as it is read, or chunks made as they are sent
        (iterated from the start on every attempt); the same content returns the same
        (content-addressed) version. An error raised while making a chunk propagates."""
        return self.call(
            PushedVersionOut,
            "POST",
            f"/v1/datasets/{name}/versions",
            content=FileChunks(body) if isinstance(body, Path) else body,
            headers={"Content-Type": "application/x-ndjson"},
        )

    def get_dataset_version(self, name: str, version: str = "latest") -> VersionOut:
        return self.call(VersionOut, "GET", f"/v1/datasets/{name}/versions/{version}")

    def create_family(self, name: str, base_model: str, policy: str | None = None) -> FamilyOut:
        """Create a family; ``policy`` is JSON/YAML text (default: the shipped policy)."""
        body: JSONObject = {"name": name, "base_model": base_model}
        if policy is not None:
            body["policy"] = policy
        return self.call(FamilyOut, "POST", "/v1/families", json=body)

    def put_policy(self, family: str, text: str) -> PolicyChangeOut:
        """Replace a family's gate policy with JSON or YAML text (a new policy version)."""
        return self.call(
            PolicyChangeOut,
            "PUT",
            f"/v1/families/{family}/policy",
            content=text.encode("utf-8"),
            headers={"Content-Type": "application/yaml"},
        )

    def get_family(self, name: str) -> FamilyOut:
        return self.call(FamilyOut, "GET", f"/v1/families/{name}")

    def register_candidate(self, metadata: JSONObject, key: str) -> CandidateSubmitted:
        """Register a candidate by path (the server reads the folder)."""
        return self.call(
            CandidateSubmitted, "POST", "/v1/candidates", json=metadata, idempotency_key=key
        )

    def upload_candidate(
        self,
        archive: Path,
        metadata: JSONObject,
        key: str,
        training_log: Path | None = None,
    ) -> CandidateSubmitted:
        """Register a candidate by uploading a tar.gz of its folder (multipart)."""
        import json

        # bytes, not open files: every retry resends the whole archive from its start
        files = {"archive": (archive.name, archive.read_bytes(), "application/gzip")}
        if training_log is not None:
            files["training_log"] = (training_log.name, training_log.read_bytes(), "text/plain")
        return self.call(
            CandidateSubmitted,
            "POST",
            "/v1/candidates/upload",
            files=files,
            data={"metadata": json.dumps(metadata)},
            idempotency_key=key,
            timeout=httpx.Timeout(60.0, read=900.0),  # the server hashes and unpacks it first
        )

    def get_candidate(self, candidate_id: int) -> CandidateDetail:
        return self.call(CandidateDetail, "GET", f"/v1/candidates/{candidate_id}")

    def evaluations_of(self, candidate_id: int, *, limit: int = 50) -> EvaluationPage:
        """The candidate's evaluations, newest first."""
        params: JSONObject = {"candidate_id": candidate_id, "limit": limit}
        return self.call(EvaluationPage, "GET", "/v1/evaluations", params=params)

    def decision_diff(
        self, decision_id: int, *, metric: str, limit: int, filters: Mapping[str, str]
    ) -> DiffPage:
        """The examples that regressed most under ``metric`` (``filters``: domain, cohort)."""
        params: JSONObject = {"metric": metric, "limit": limit, **filters}
        return self.call(DiffPage, "GET", f"/v1/decisions/{decision_id}/diff", params=params)

    def get_evaluation(self, evaluation_id: int, *, wait_seconds: float = 0) -> EvaluationDetail:
        """The evaluation; ``wait_seconds`` > 0 long-polls (the server answers when its status
        or progress changes, it ends, or the seconds pass; a busy server answers at once)."""
        params: JSONObject = {"wait_seconds": wait_seconds} if wait_seconds > 0 else {}
        return self.call(EvaluationDetail, "GET", f"/v1/evaluations/{evaluation_id}", params=params)

    def rescore(self, evaluation_id: int, evaluators: list[str] | None) -> EvaluationDetail:
        """Queue a succeeded evaluation to be scored again from its stored outputs."""
        body = {"evaluators": evaluators} if evaluators else {}
        return self.call(
            EvaluationDetail, "POST", f"/v1/evaluations/{evaluation_id}/rescore", json=body
        )

    def rescore_many(
        self, evaluation_ids: list[int], evaluators: list[str] | None
    ) -> list[EvaluationDetail]:
        """Queue several succeeded evaluations to be scored again, all or none (one request;
        the server's worker scores them as one group)."""
        body: JSONObject = {"evaluation_ids": list[JSONValue](evaluation_ids)}
        if evaluators:
            body["evaluators"] = list[JSONValue](evaluators)
        return self.call(
            RootModel[list[EvaluationDetail]], "POST", "/v1/evaluations/rescore", json=body
        ).root

    def get_decision(self, decision_id: int) -> DecisionOut:
        return self.call(DecisionOut, "GET", f"/v1/decisions/{decision_id}")

    def decision_for_evaluation(self, evaluation_id: int) -> DecisionOut:
        """The gate decision of a finished evaluation (the server computes it if missing)."""
        return self.call(
            DecisionOut, "GET", "/v1/decisions", params={"evaluation_id": evaluation_id}
        )

    def get_sweep(self, family: str, sweep: str) -> SweepOut:
        return self.call(SweepOut, "GET", f"/v1/sweeps/{family}/{sweep}")

    def promote(
        self,
        family: str,
        candidate_id: int,
        *,
        alias: str = PRODUCTION,
        reason: str | None = None,
        override: bool = False,
    ) -> PromotionOut:
        body: JSONObject = {"candidate_id": candidate_id, "alias": alias, "override": override}
        if reason:
            body["reason"] = reason
        return self.call(PromotionOut, "POST", f"/v1/families/{family}/promote", json=body)

    def promotions(self, family: str) -> list[PromotionOut]:
        """The family's promotions, newest first (the first page of up to 500)."""
        page = self.call(
            PromotionPage, "GET", "/v1/promotions", params={"family": family, "limit": 500}
        )
        return page.items
