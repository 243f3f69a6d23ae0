"""A sweep in one pass: candidates of one base and their baseline in mixed-adapter batches,
each evaluation's rows, probe, provenance and cache key exactly as if it had run alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from service.api.app import create_app
from service.db.base import utcnow
from service.db.models import Evaluation, ExampleResult, LeaseEvent
from service.db.session import unit_of_work
from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from tests.tiny_setup import dataset_jsonl


class Crash(Exception):
    """Stands for the worker dying right after a chunk was committed."""


@pytest.fixture
def forward_calls() -> Iterator[list[str]]:
    """Every forward of a causal LM in this process (a global module forward hook)."""
    calls: list[str] = []

    def hook(module: torch.nn.Module, *_: Any) -> None:
        if type(module).__name__.endswith("ForCausalLM"):
            calls.append(type(module).__name__)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield calls
    handle.remove()


def _submit_sweep(
    client: TestClient, headers: dict[str, str], base: Path, adapters: list[Path]
) -> dict[str, int]:
    """Dataset, family, and one candidate per adapter; name → evaluation id (+ baseline)."""
    pushed = client.post(
        "/v1/datasets/qa/versions",
        content=dataset_jsonl(),
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    assert pushed.status_code in (200, 201), pushed.text
    family = client.post(
        "/v1/families", json={"name": "tiny", "base_model": str(base)}, headers=headers
    )
    assert family.status_code == 201, family.text
    ids: dict[str, int] = {}
    for i, adapter in enumerate(adapters):
        created = _submit_one(client, headers, adapter, 1e-2 * (i + 1))
        ids[adapter.name] = created["evaluation_id"]
        ids["baseline"] = created["baseline_evaluation_id"]
    return ids


def _submit_one(
    client: TestClient, headers: dict[str, str], adapter: Path, lr: float
) -> dict[str, Any]:
    body = {
        "family": "tiny",
        "checkpoint": str(adapter),
        "kind": "lora",
        "learning_rate": lr,
        "evaluate": True,
        "dataset": "qa",
        "name": adapter.name,
    }
    created = client.post("/v1/candidates", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


def _state(client: TestClient, headers: dict[str, str], ids: dict[str, int]) -> dict[str, Any]:
    out = {}
    for name, evaluation_id in ids.items():
        ev = client.get(f"/v1/evaluations/{evaluation_id}", headers=headers).json()
        assert ev["status"] == "succeeded", ev["error"]
        page = client.get(f"/v1/evaluations/{evaluation_id}/results?limit=500", headers=headers)
        prov = ev["provenance"]
        out[name] = {
            # scores to 1e-5: embeddings of a text move in the last float bits with what
            # else shares its embedding batch
            "rows": {
                r["example_key"]: (r["output"], {m: round(v, 5) for m, v in r["scores"].items()})
                for r in page.json()["items"]
            },
            "progress": ev["progress"],
            "probe": prov.get("adapter_probe"),
            "key": (prov["candidate_digests"], prov["generation"], prov["evaluators"]),
            "aggregates": {
                (a["metric"], a["scope"], a["scope_value"]): round(a["mean"], 5)
                for a in ev["aggregates"]
            },
        }
    return out


def test_sweep_in_one_pass_equals_single_runs_and_resumes_after_a_crash(
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    tiny_base: Path,
    capitals_adapter: Path,
    pirate_adapter: Path,
    tmp_path: Path,
    forward_calls: list[str],
) -> None:
    adapters = [capitals_adapter, pirate_adapter]
    ids = _submit_sweep(client, auth, tiny_base, adapters)
    app = client.app
    worker = InProcessWorker(settings, app.state.sessionmaker)  # type: ignore[attr-defined]

    def crash(evaluation_id: int, done: int) -> None:
        raise Crash(f"worker died after a chunk of evaluation {evaluation_id}")

    worker.context.after_chunk = crash
    assert worker.run_pending() == 3  # one group; every member failed by the crash
    stopped = {n: client.get(f"/v1/evaluations/{i}", headers=auth).json() for n, i in ids.items()}
    assert {ev["status"] for ev in stopped.values()} == {"failed"}
    done = sorted(ev["progress"]["done"] for ev in stopped.values())
    assert done[-1] > 0  # the first chunk was committed before the crash ...
    assert done[0] < stopped["baseline"]["progress"]["total"]  # ... and the rest not yet
    for evaluation_id in ids.values():
        assert (
            client.post(f"/v1/evaluations/{evaluation_id}/retry", headers=auth).status_code == 200
        )
    worker.context.after_chunk = None
    forward_calls.clear()
    assert worker.run_pending() == 3
    resumed_calls = len(forward_calls)
    swept = _state(client, auth, ids)
    pool = worker.context.model_pool()
    assert pool.base_loads == 1
    assert pool.adapter_loads == 2

    # the same evaluations, each alone, in a fresh database
    alone = settings.model_copy(
        update={
            "data_dir": tmp_path / "alone",
            "database_url": f"sqlite:///{tmp_path / 'alone.db'}",
            "sweep_size": 1,
        }
    )
    with TestClient(create_app(alone)) as other:
        headers = {"Authorization": "Bearer " + alone.admin_token_file.read_text().strip()}
        other_ids = _submit_sweep(other, headers, tiny_base, adapters)
        single = InProcessWorker(alone, other.app.state.sessionmaker)  # type: ignore[attr-defined]
        # the batch the sweep's worker measured (a timing, noisy on a busy machine): the
        # forward passes below then differ only by what running as a group saves
        single.context.batcher = worker.context.batcher
        forward_calls.clear()
        assert single.run_pending() == 3
        single_calls = len(forward_calls)
        reference = _state(other, headers, other_ids)

    assert swept == reference
    assert swept[pirate_adapter.name]["rows"] != swept["baseline"]["rows"]  # rows had teeth
    assert swept[capitals_adapter.name]["probe"]["max_abs_delta"] > 0
    # mixed-adapter batches: fewer forward passes than one evaluation after another, even
    # though the sweep also redid the probes and ran only the rows the crash left
    assert resumed_calls < single_calls


def test_a_late_arrival_joins_the_group_before_it_generates(
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    tiny_base: Path,
    capitals_adapter: Path,
    pirate_adapter: Path,
) -> None:
    ids = _submit_sweep(client, auth, tiny_base, [capitals_adapter])
    factory = client.app.state.sessionmaker  # type: ignore[attr-defined]
    gathering = settings.model_copy(update={"sweep_gather_seconds": 2.0})
    worker = InProcessWorker(gathering, factory)
    ran: list[int] = []
    thread = threading.Thread(target=lambda: ran.append(worker.run_pending(gather=True)))
    thread.start()
    deadline = time.monotonic() + 60
    while client.get(f"/v1/evaluations/{ids['baseline']}", headers=auth).json()["status"] != (
        "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    late = _submit_one(client, auth, pirate_adapter, 3e-2)  # the group is already running
    thread.join(timeout=120)
    # one call ran all three: the late one was not among the evaluations it found waiting
    assert ran == [3]
    with unit_of_work(factory, write=False) as session:
        events = session.execute(
            select(LeaseEvent.evaluation_id, LeaseEvent.event).order_by(LeaseEvent.id)
        ).all()
        first_row = session.scalar(
            select(func.min(ExampleResult.id)).where(ExampleResult.evaluation_id == ids["baseline"])
        )
        late_rows = session.scalar(
            select(func.count()).where(ExampleResult.evaluation_id == late["evaluation_id"])
        )
    # it joined before the group wrote a row: claimed before any release, and generated
    assert events.index((late["evaluation_id"], "claimed")) < events.index(
        (ids["baseline"], "released")
    )
    assert first_row is not None
    assert late_rows
    statuses = {
        i: client.get(f"/v1/evaluations/{i}", headers=auth).json()["status"]
        for i in (*ids.values(), late["evaluation_id"])
    }
    assert set(statuses.values()) == {"succeeded"}


def test_a_queue_quiet_for_longer_than_the_gather_starts_at_once(
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    tiny_base: Path,
    capitals_adapter: Path,
) -> None:
    _submit_sweep(client, auth, tiny_base, [capitals_adapter])
    factory = client.app.state.sessionmaker  # type: ignore[attr-defined]
    with unit_of_work(factory) as session:
        session.execute(update(Evaluation).values(created_at=utcnow() - timedelta(seconds=120)))
    waiting = settings.model_copy(update={"sweep_gather_seconds": 60.0})
    worker = InProcessWorker(waiting, factory)
    started = time.monotonic()
    assert worker.run_pending(gather=True) == 2
    assert time.monotonic() - started < 60  # it did not wait for the rest of a sweep
