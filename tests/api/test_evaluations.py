"""Evaluations through the API, on SQLite and PostgreSQL: baseline reuse, filters, results,
cancel rules, scopes. No model runs: the worker's rows are written with the ORM."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import (
    Aggregate,
    Evaluation,
    ExampleResult,
    GateDecision,
    Score,
)
from service.db.session import unit_of_work
from service.families import current_policy, get_family
from tests.checkpoint_files import (
    DATASET_RECORDS,
    api_candidate,
    api_dataset,
    api_family,
    write_lora_adapter,
)

Headers = dict[str, str]


@contextmanager
def db(client: TestClient) -> Iterator[Session]:
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        yield session


def set_status(client: TestClient, evaluation_id: int, status: str) -> None:
    with db(client) as session:
        session.get_one(Evaluation, evaluation_id).status = status


class RecordingDispatcher:
    """Records each enqueued id with the status a *separate* session sees at that moment."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.seen: list[tuple[int, str | None]] = []

    def enqueue(self, evaluation_id: int) -> None:
        with db(self.client) as session:
            row = session.get(Evaluation, evaluation_id)
            self.seen.append((evaluation_id, row.status if row else None))

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


@pytest.fixture
def world(client: TestClient, auth: Headers) -> dict[str, Any]:
    family = api_family(client, auth)
    dataset = api_dataset(client, auth)
    return {"family": family, "dataset": dataset}


@pytest.fixture
def new_candidate(client: TestClient, auth: Headers, checkpoint_root: Path) -> Callable[..., int]:
    counter = iter(range(1000))

    def make(family: str = "support-bot", lr: float = 1e-4, sweep: str | None = None) -> int:
        path = write_lora_adapter(checkpoint_root / f"c{next(counter)}")
        response = api_candidate(client, auth, path, family=family, learning_rate=lr, sweep=sweep)
        assert response.status_code == 201, response.text
        candidate_id: int = response.json()["id"]
        return candidate_id

    return make


def evaluate(client: TestClient, auth: Headers, candidate_id: int, dataset: str = "support") -> Any:
    return client.post(
        "/v1/evaluations", json={"candidate_id": candidate_id, "dataset": dataset}, headers=auth
    )


def test_create_queues_and_shares_one_baseline(
    client: TestClient, auth: Headers, world: dict[str, Any], new_candidate: Callable[..., int]
) -> None:
    dispatcher = RecordingDispatcher(client)
    client.app.state.dispatcher = dispatcher  # type: ignore[attr-defined]
    first = evaluate(client, auth, new_candidate())
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "queued"
    assert body["progress"] == {"done": 0, "total": 3}
    assert body["config"] == {
        "max_new_tokens": 16,
        "chat_template": False,
        "dtype": "auto",
        "seed": 0,
    }
    assert body["dataset"] == {
        "name": "support",
        "version": 1,
        "digest": world["dataset"]["digest"],
    }
    assert body["aggregates"] == []
    assert body["gate_decision_id"] is None
    baseline_id = body["baseline_evaluation_id"]
    baseline = client.get(f"/v1/evaluations/{baseline_id}", headers=auth).json()
    assert baseline["candidate"]["id"] == world["family"]["base_candidate_id"]
    assert baseline["candidate"]["kind"] == "base"
    assert baseline["baseline_evaluation_id"] is None
    assert baseline["config"] == body["config"]
    # Enqueued after commit: another session already sees both rows queued.
    assert dispatcher.seen == [(baseline_id, "queued"), (body["id"], "queued")]

    second = evaluate(client, auth, new_candidate(), dataset="support@1").json()
    assert second["baseline_evaluation_id"] == baseline_id
    assert dispatcher.seen[2:] == [(second["id"], "queued")]
    assert client.get("/v1/evaluations", headers=auth).json()["total"] == 3


def test_failed_baseline_is_replaced_and_new_version_gets_its_own(
    client: TestClient, auth: Headers, world: dict[str, Any], new_candidate: Callable[..., int]
) -> None:
    first = evaluate(client, auth, new_candidate()).json()
    set_status(client, first["baseline_evaluation_id"], "failed")
    second = evaluate(client, auth, new_candidate()).json()
    assert second["baseline_evaluation_id"] not in (None, first["baseline_evaluation_id"])

    api_dataset(client, auth, records=[*DATASET_RECORDS, {"input": "One more."}])
    third = evaluate(client, auth, new_candidate()).json()
    assert third["dataset"]["version"] == 2
    assert third["progress"]["total"] == 4
    assert third["baseline_evaluation_id"] not in (
        first["baseline_evaluation_id"],
        second["baseline_evaluation_id"],
    )


def test_base_candidate_has_no_baseline(
    client: TestClient, auth: Headers, world: dict[str, Any]
) -> None:
    body = evaluate(client, auth, world["family"]["base_candidate_id"]).json()
    assert body["candidate"]["kind"] == "base"
    assert body["baseline_evaluation_id"] is None
    assert client.get("/v1/evaluations", headers=auth).json()["total"] == 1


def test_create_refusals(
    client: TestClient, auth: Headers, world: dict[str, Any], new_candidate: Callable[..., int]
) -> None:
    candidate = new_candidate()
    cases = {
        "missing": (404, "DatasetNotFound"),
        "support@9": (404, "DatasetVersionNotFound"),
        "support@x": (422, "InvalidRequest"),
        "@1": (422, "InvalidRequest"),
    }
    for dataset, expected in cases.items():
        response = evaluate(client, auth, candidate, dataset)
        assert (response.status_code, response.json()["error"]) == expected, dataset
    response = evaluate(client, auth, 999999)
    assert (response.status_code, response.json()["error"]) == (404, "CandidateNotFound")
    assert client.get("/v1/evaluations", headers=auth).json()["total"] == 0


def test_list_filters(
    client: TestClient, auth: Headers, world: dict[str, Any], new_candidate: Callable[..., int]
) -> None:
    api_family(client, auth, "other-bot")
    api_dataset(client, auth, "faq", records=[{"input": "Why?"}])
    a = evaluate(client, auth, new_candidate(sweep="w47")).json()
    b = evaluate(client, auth, new_candidate(sweep="w48")).json()
    c = evaluate(client, auth, new_candidate(family="other-bot", sweep="w47"), "faq").json()
    base_a, base_c = a["baseline_evaluation_id"], c["baseline_evaluation_id"]
    set_status(client, b["id"], "running")
    set_status(client, c["id"], "succeeded")

    def ids(**params: Any) -> list[int]:
        response = client.get("/v1/evaluations", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["items"]]

    everything = [c["id"], base_c, b["id"], a["id"], base_a]
    assert ids() == everything  # newest first
    assert ids(family="support-bot") == [b["id"], a["id"], base_a]
    assert ids(family="other-bot") == [c["id"], base_c]
    assert ids(sweep="w47") == [c["id"], a["id"]]
    assert ids(status="queued") == [base_c, a["id"], base_a]
    assert ids(status="running") == [b["id"]]
    assert ids(dataset="faq") == [c["id"], base_c]
    assert ids(dataset="support@1") == [b["id"], a["id"], base_a]
    assert ids(family="support-bot", sweep="w47", status="queued") == [a["id"]]
    assert ids(sweep="w47", dataset="faq", status="succeeded") == [c["id"]]
    assert ids(candidate_id=a["candidate"]["id"]) == [a["id"]]
    assert ids(family="other-bot", status="running") == []

    page = client.get("/v1/evaluations?offset=1&limit=2", headers=auth).json()
    assert ([r["id"] for r in page["items"]], page["total"]) == (everything[1:3], 5)
    for bad in ("limit=501", "limit=0", "offset=-1", "status=done"):
        response = client.get(f"/v1/evaluations?{bad}", headers=auth)
        assert response.status_code == 422, bad
    assert client.get("/v1/evaluations?family=nope", headers=auth).status_code == 404
    assert client.get("/v1/evaluations?dataset=nope", headers=auth).status_code == 404


def _write_results(client: TestClient, evaluation_id: int) -> None:
    """What a finished worker leaves behind: outputs, scores, aggregates, a decision."""
    outputs = {"greet": "Hello there!", "capital": "Paris.", "json": '{"name": "x"}'}
    relevance = {"greet": 0.9, "capital": 0.8, "json": 0.4}
    with db(client) as session:
        for key, output in outputs.items():
            session.add(ExampleResult(evaluation_id=evaluation_id, example_key=key, output=output))
            session.add(
                Score(
                    evaluation_id=evaluation_id,
                    example_key=key,
                    metric="relevance",
                    value=relevance[key],
                    evaluator="relevance",
                    evaluator_version="1.0",
                )
            )
        session.add(
            Score(
                evaluation_id=evaluation_id,
                example_key="json",
                metric="json_valid",
                value=1.0,
                evaluator="json_validity",
                evaluator_version="2.1",
            )
        )
        session.add(
            Aggregate(
                evaluation_id=evaluation_id,
                metric="relevance",
                scope="all",
                scope_value="",
                n=3,
                mean=0.7,
                ci_low=0.5,
                ci_high=0.9,
            )
        )
        evaluation = session.get_one(Evaluation, evaluation_id)
        evaluation.status, evaluation.progress_done = "succeeded", 3
        evaluation.finished_at = datetime.now(UTC)
        policy = current_policy(session, get_family(session, "support-bot"))
        session.add(
            GateDecision(
                candidate_evaluation_id=evaluation_id,
                baseline_evaluation_id=evaluation.baseline_evaluation_id,
                policy_id=policy.id,
                verdict="pass",
            )
        )


def test_detail_and_results(
    client: TestClient, auth: Headers, world: dict[str, Any], new_candidate: Callable[..., int]
) -> None:
    evaluation = evaluate(client, auth, new_candidate()).json()
    _write_results(client, evaluation["id"])
    detail = client.get(f"/v1/evaluations/{evaluation['id']}", headers=auth).json()
    assert detail["status"] == "succeeded"
    assert detail["progress"] == {"done": 3, "total": 3}
    assert detail["aggregates"] == [
        {
            "metric": "relevance",
            "scope": "all",
            "scope_value": "",
            "n": 3,
            "mean": 0.7,
            "ci_low": 0.5,
            "ci_high": 0.9,
        }
    ]
    with db(client) as session:
        decision = session.scalar(select(GateDecision.id))
    assert detail["gate_decision_id"] == decision
    assert detail["finished_at"].endswith("Z")  # UTC on both databases
    # the list names each evaluation's decision too (the candidate page skips the detail)
    listed = client.get(
        "/v1/evaluations", params={"candidate_id": detail["candidate"]["id"]}, headers=auth
    ).json()["items"]
    assert [(e["id"], e["gate_decision_id"]) for e in listed] == [(evaluation["id"], decision)]
    base = world["family"]["base_candidate_id"]
    listed = client.get("/v1/evaluations", params={"candidate_id": base}, headers=auth).json()
    (baseline,) = listed["items"]
    assert baseline["gate_decision_id"] is None  # the baseline is never the decided side

    def results(**params: Any) -> dict[str, Any]:
        url = f"/v1/evaluations/{evaluation['id']}/results"
        response = client.get(url, params=params, headers=auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = results()
    assert everything["total"] == 3
    first = everything["items"][0]
    assert (first["example_key"], first["input"], first["reference"]) == (
        "greet",
        "Say hello.",
        "Hello!",
    )
    assert (first["output"], first["cohort"], first["domain"]) == (
        "Hello there!",
        "chit-chat",
        "in",
    )
    assert first["scores"] == {"relevance": 0.9}
    assert first["evaluators"] == {"relevance": {"name": "relevance", "version": "1.0"}}
    json_row = everything["items"][2]
    assert json_row["scores"] == {"json_valid": 1.0, "relevance": 0.4}

    assert [r["example_key"] for r in results(domain="out")["items"]] == ["json"]
    assert [r["example_key"] for r in results(cohort="geo")["items"]] == ["capital", "json"]
    by_metric = results(metric="json_valid")
    assert (by_metric["total"], by_metric["items"][0]["scores"]) == (1, {"json_valid": 1.0})
    assert results(cohort="geo", domain="in")["total"] == 1
    paged = results(offset=1, limit=1)
    assert ([r["example_key"] for r in paged["items"]], paged["total"]) == (["capital"], 3)
    url = f"/v1/evaluations/{evaluation['id']}/results?domain=sideways"
    assert client.get(url, headers=auth).status_code == 422
    assert client.get("/v1/evaluations/999999/results", headers=auth).status_code == 404
    assert client.get("/v1/evaluations/999999", headers=auth).json()["error"] == (
        "EvaluationNotFound"
    )


def test_cancel_rules(
    client: TestClient, auth: Headers, world: dict[str, Any], new_candidate: Callable[..., int]
) -> None:
    queued = evaluate(client, auth, new_candidate()).json()
    response = client.post(f"/v1/evaluations/{queued['id']}/cancel", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = client.post(f"/v1/evaluations/{queued['id']}/cancel", headers=auth)
    assert (again.status_code, again.json()["error"]) == (409, "EvaluationAlreadyFinished")

    running = evaluate(client, auth, new_candidate()).json()
    set_status(client, running["id"], "running")
    response = client.post(f"/v1/evaluations/{running['id']}/cancel", headers=auth)
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", True)

    for status in ("succeeded", "failed"):
        set_status(client, running["id"], status)
        response = client.post(f"/v1/evaluations/{running['id']}/cancel", headers=auth)
        assert response.status_code == 409
        assert status in response.json()["detail"]
    assert client.post("/v1/evaluations/999999/cancel", headers=auth).status_code == 404
    # A cancelled baseline is not reused: the next candidate gets a fresh one.
    baseline = queued["baseline_evaluation_id"]
    client.post(f"/v1/evaluations/{baseline}/cancel", headers=auth)
    fresh = evaluate(client, auth, new_candidate()).json()
    assert fresh["baseline_evaluation_id"] != baseline


def test_scopes(
    client: TestClient,
    token_for: Callable[[str], str],
    world: dict[str, Any],
    new_candidate: Callable[..., int],
) -> None:
    read = {"Authorization": f"Bearer {token_for('read')}"}
    submit = {"Authorization": f"Bearer {token_for('submit')}"}
    candidate = new_candidate()
    assert evaluate(client, {}, candidate).status_code == 401
    assert evaluate(client, read, candidate).status_code == 403
    created = evaluate(client, submit, candidate).json()["id"]
    for url in (
        "/v1/evaluations",
        f"/v1/evaluations/{created}",
        f"/v1/evaluations/{created}/results",
    ):
        assert client.get(url).status_code == 401, url
        assert client.get(url, headers=read).status_code == 200, url
    cancel = f"/v1/evaluations/{created}/cancel"
    assert client.post(cancel).status_code == 401
    assert client.post(cancel, headers=read).status_code == 403
    assert client.post(cancel, headers=submit).status_code == 200
