"""The scale-out path end to end: the API publishes to Celery on Redis, workers evaluate.

One stack per module (API + workers as real subprocesses, a fresh PostgreSQL
database, a queue of its own), tiny Llama, 8-24 examples, 8 new tokens, chunks of
4, a 5 s lease with a 1 s heartbeat and a 2 s recovery sweep, so a takeover after
a crash happens within seconds.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from service.db.models import ExampleResult
from service.db.session import make_sessionmaker, unit_of_work
from service.settings import Settings
from service.worker.celery_app import TASK_NAME, QueueOptions, make_celery
from tests.adapters import trained_adapter
from tests.models import tiny_llama_dir
from tests.scaleout.stack import (
    Stack,
    fresh_postgres_database,
    lease_events,
    purge_queue,
    results_by_key,
    wait_finished,
)
from tests.services import REDIS_URL, postgres_unavailable, redis_unavailable, require

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True, scope="module")
def _services() -> None:
    """Redis and PostgreSQL answer; otherwise skip, or fail under CI=true."""
    require(redis_unavailable(), postgres_unavailable())


FINISH_TIMEOUT = 150


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    queue = f"tunegate-test-{uuid.uuid4().hex[:8]}"
    with fresh_postgres_database() as url:
        stack = Stack(
            root=tmp_path_factory.mktemp("scaleout"),
            database_url=url,
            queue=queue,
            extra_env={
                "TUNEGATE_CHUNK_SIZE": "4",
                "TUNEGATE_BATCH_SIZE": "4",
                "TUNEGATE_LEASE_SECONDS": "5",
                "TUNEGATE_HEARTBEAT_SECONDS": "1",
                "TUNEGATE_RECOVERY_SECONDS": "2",
            },
        )
        try:
            stack.start_api()
            stack.start_worker("w1")
            yield stack
        finally:
            stack.close()
            purge_queue(queue)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client


@pytest.fixture(scope="module")
def base_candidate(api: httpx.Client) -> int:
    """The family on the tiny Llama; its base candidate id."""
    response = api.post("/v1/families", json={"name": "tiny", "base_model": str(tiny_llama_dir())})
    assert response.status_code == 201, response.text
    return int(response.json()["base_candidate_id"])


def push(api: httpx.Client, name: str, n: int, *, heldout: str | None = None) -> int:
    """Push ``n`` examples (8 new tokens, chat template) as a version of ``name``."""
    lines: list[dict[str, Any]] = [{"generation": {"max_new_tokens": 8, "chat_template": True}}]
    lines += [
        {
            "id": f"{name}-{i}",
            "input": f"[{name}] What is {i} plus {i}?",
            "reference": f"{i} plus {i} is {2 * i}.",
            "domain": "in" if i % 2 else "out",
            "cohort": f"c{i % 3}",
        }
        for i in range(n)
    ]
    if heldout is not None:
        lines.append({"heldout": heldout})
    response = api.post(
        f"/v1/datasets/{name}/versions", content="\n".join(json.dumps(x) for x in lines)
    )
    assert response.status_code in (200, 201), response.text
    return int(response.json()["version"])


def evaluate(api: httpx.Client, candidate_id: int, dataset: str) -> int:
    response = api.post("/v1/evaluations", json={"candidate_id": candidate_id, "dataset": dataset})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def wait_progress(stack: Stack, api: httpx.Client, evaluation_id: int, at_least: int) -> int:
    done = 0

    def check() -> bool:
        nonlocal done
        body = api.get(f"/v1/evaluations/{evaluation_id}").json()
        assert body["status"] in ("queued", "running"), body
        done = int(body["progress"]["done"])
        return done >= at_least

    stack.wait_for(check, FINISH_TIMEOUT, f"evaluation {evaluation_id} to pass {at_least} examples")
    return done


def test_candidate_is_evaluated_by_a_worker_with_its_baseline(
    stack: Stack, api: httpx.Client, base_candidate: int
) -> None:
    push(api, "e2e", 8)
    adapter = trained_adapter("tiny", "capitals", lr=1e-2, steps=5)
    response = api.post(
        "/v1/candidates",
        json={
            "family": "tiny",
            "checkpoint": str(adapter),
            "kind": "lora",
            "learning_rate": 1e-2,
            "sweep": "scaleout",
            "evaluate": True,
            "dataset": "e2e",
        },
    )
    assert response.status_code == 201, response.text
    submitted = response.json()
    candidate_eval, baseline_eval = submitted["evaluation_id"], submitted["baseline_evaluation_id"]
    assert baseline_eval is not None

    for evaluation_id in (baseline_eval, candidate_eval):
        body = wait_finished(stack, api, evaluation_id, FINISH_TIMEOUT)
        assert body["status"] == "succeeded", body["error"]
        assert body["progress"] == {"done": 8, "total": 8}
        assert body["provenance"]["worker"] == "w1"  # the worker ran it, not the API process
    candidate = api.get(f"/v1/evaluations/{candidate_eval}").json()
    assert candidate["provenance"]["adapter_probe"]["max_abs_delta"] > 0
    assert len(results_by_key(api, candidate_eval)) == 8

    # the gate decision is taken by the worker right after the candidate succeeded
    decision: dict[str, Any] = {}

    def decided() -> bool:
        decision.update(api.get(f"/v1/evaluations/{candidate_eval}").json())
        return decision.get("gate_decision_id") is not None

    stack.wait_for(decided, 20, "the gate decision on the candidate evaluation")


def test_killed_worker_evaluation_is_resumed_without_duplicates(
    stack: Stack, api: httpx.Client, base_candidate: int, tmp_path: Path
) -> None:
    n = 24
    push(api, "recovery", n)
    push(api, "recovery", n, heldout="A held-out paragraph changes the digest, not the examples.")
    reference = evaluate(api, base_candidate, "recovery@2")  # uninterrupted, other digest: no cache
    assert wait_finished(stack, api, reference, FINISH_TIMEOUT)["status"] == "succeeded"

    crashed = evaluate(api, base_candidate, "recovery@1")
    done_at_kill = wait_progress(stack, api, crashed, at_least=4)
    (victim,) = stack.workers()
    victim.kill()
    killed_at = datetime.now().astimezone()
    assert done_at_kill < n, "the evaluation finished before the worker could be killed"
    assert api.get(f"/v1/evaluations/{crashed}").json()["status"] == "running"

    generated = tmp_path / "w2-generated.txt"
    stack.start_worker("w2", count_into=generated)
    body = wait_finished(stack, api, crashed, FINISH_TIMEOUT)
    assert body["status"] == "succeeded", body["error"]
    assert body["attempts"] == 2
    assert body["provenance"]["worker"] == "w2"

    # per-example rows equal those of the uninterrupted run: none missing, none changed
    expected, got = results_by_key(api, reference), results_by_key(api, crashed)
    assert sorted(got) == sorted(expected) == sorted(f"recovery-{i}" for i in range(n))
    for key, row in got.items():
        assert row["output"] == expected[key]["output"], key
        assert row["scores"] == pytest.approx(expected[key]["scores"], abs=1e-6), key

    engine = create_engine(stack.database_url)
    with engine.connect() as conn:
        per_key = conn.execute(
            select(ExampleResult.example_key, func.count(), func.min(ExampleResult.created_at))
            .where(ExampleResult.evaluation_id == crashed)
            .group_by(ExampleResult.example_key)
        ).all()
    engine.dispose()
    assert len(per_key) == n
    assert all(count == 1 for _, count, _ in per_key), "an example was stored twice"
    kept = [key for key, _, created in per_key if created < killed_at]
    assert len(kept) >= done_at_kill, "rows written before the crash were not kept"
    # resumed, not restarted: w2's model generated exactly the examples w1 had not stored
    w2_generated = sum(int(line) for line in generated.read_text().split())
    assert w2_generated == n - len(kept) > 0

    events = [(e.worker_id, e.event) for e in lease_events(stack.database_url, [crashed])]
    assert events == [("w1", "claimed"), ("w1", "expired"), ("w2", "claimed"), ("w2", "released")]


def _intervals(events: list[Any]) -> dict[int, list[tuple[str, datetime, datetime]]]:
    """Per evaluation, (worker, claimed_at, ended_at) for every claim, ended by that
    worker's next released/lost/expired event."""
    out: dict[int, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    open_claims: dict[tuple[int, str], datetime] = {}
    for event in events:
        key = (event.evaluation_id, event.worker_id)
        if event.event == "claimed":
            assert key not in open_claims, f"{key} claimed twice without a release"
            open_claims[key] = event.at
        elif event.event in ("released", "lost", "expired"):
            out[event.evaluation_id].append((event.worker_id, open_claims.pop(key), event.at))
    assert not open_claims, f"claims never released: {open_claims}"
    return out


def _assert_disjoint(spans: list[tuple[str, datetime, datetime]], what: str) -> None:
    spans = sorted(spans, key=lambda s: s[1])
    for (w1, _, end1), (w2, start2, _) in itertools.pairwise(spans):
        assert end1 <= start2, f"{what}: {w1} held it until {end1}, {w2} claimed at {start2}"


def test_two_workers_run_each_evaluation_exactly_once(
    stack: Stack, api: httpx.Client, base_candidate: int
) -> None:
    while len(stack.workers()) < 2:
        stack.start_worker(f"w{len(stack.procs)}")
    ids = []
    for k in range(4):
        push(api, f"multi-{k}", 8)
        ids.append(evaluate(api, base_candidate, f"multi-{k}"))
    # duplicate messages (a redelivery, a double publish) must be harmless
    publisher = make_celery(Settings(broker_url=REDIS_URL), QueueOptions(stack.queue, 3600, 2))
    for evaluation_id in ids:
        for _ in range(2):
            publisher.send_task(TASK_NAME, args=[evaluation_id], queue=stack.queue)
    publisher.close()

    for evaluation_id in ids:
        body = wait_finished(stack, api, evaluation_id, FINISH_TIMEOUT)
        assert body["status"] == "succeeded", body["error"]
        assert body["attempts"] == 1

    events = lease_events(stack.database_url, ids)
    per_evaluation = _intervals(events)
    for evaluation_id in ids:
        spans = per_evaluation[evaluation_id]
        assert len(spans) == 1, f"evaluation {evaluation_id} was claimed {len(spans)} times"
        _assert_disjoint(spans, f"evaluation {evaluation_id}")
    by_worker: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    for spans in per_evaluation.values():
        for span in spans:
            by_worker[span[0]].append(span)
    for worker, spans in by_worker.items():  # one evaluation at a time per worker
        _assert_disjoint(spans, f"worker {worker}")
    assert len(by_worker) >= 2, f"only {sorted(by_worker)} ran evaluations"
    assert Counter(e.event for e in events) == {"claimed": 4, "released": 4}


def test_cancel_over_rest_stops_the_job_in_the_worker(
    stack: Stack, api: httpx.Client, base_candidate: int
) -> None:
    assert stack.workers()
    n = 20
    push(api, "cancel", n)
    evaluation_id = evaluate(api, base_candidate, "cancel")
    wait_progress(stack, api, evaluation_id, at_least=4)
    response = api.post(f"/v1/evaluations/{evaluation_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["cancel_requested"] is True

    body = wait_finished(stack, api, evaluation_id, 60)
    assert body["status"] == "cancelled"
    assert 4 <= body["progress"]["done"] < n
    events = lease_events(stack.database_url, [evaluation_id])
    assert [e.event for e in events] == ["claimed", "released"]


def test_queued_evaluation_without_a_message_is_picked_up(
    stack: Stack, api: httpx.Client, base_candidate: int
) -> None:
    """A row committed as queued but never published (broker down at the time)."""
    from service import evaluation_commands
    from service.candidates import get_candidate

    assert stack.workers()
    push(api, "orphan", 8)
    engine = create_engine(stack.database_url)
    settings = Settings(database_url=stack.database_url, data_dir=Path(stack.root / "data"))
    with unit_of_work(make_sessionmaker(engine)) as session:
        candidate = get_candidate(session, base_candidate)
        evaluation, queued = evaluation_commands.create_evaluation(
            session, settings, candidate, "orphan"
        )
        orphan = evaluation.id
    engine.dispose()
    assert queued == [orphan]
    body = wait_finished(stack, api, orphan, 60)  # an idle worker's sweep re-publishes it
    assert body["status"] == "succeeded", body["error"]
    events = lease_events(stack.database_url, [orphan])
    assert [e.event for e in events] == ["claimed", "released"]
