"""A worker SIGKILLed inside each phase of an evaluation — generating, scoring stored
outputs, writing the aggregates — and a fresh worker that resumes it after the lease
expired: the evaluation succeeds with rows (outputs, scores, aggregates) equal to an
uninterrupted run of the same checkpoint, none lost, none stored twice; the rows written
before the kill stay as they were (same id, ``created_at`` and values), and the model
runs only what was missing (counted by a forward hook on the model itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from evaluators import registry
from service.api.app import create_app
from service.db.base import utcnow
from service.db.models import Aggregate, ExampleResult, GateDecision, Score
from service.db.session import unit_of_work
from service.engine.job import run_evaluation
from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from service.worker.recovery import expire_stale_leases
from tests.forward_count import counting_forward_passes
from tests.tiny_setup import dataset_jsonl, model_settings

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 5
SUBSET = ["collapse", "reference_match"]

Rows = dict[tuple[str, ...], tuple[Any, ...]]


def _rows(factory: sessionmaker[Session], evaluation_id: int) -> Rows:
    """The evaluation's per-example rows by key: outputs and scores, with their ids."""
    with unit_of_work(factory, write=False) as session:
        results = session.scalars(
            select(ExampleResult).where(ExampleResult.evaluation_id == evaluation_id)
        )
        rows: Rows = {
            (r.example_key,): (r.id, r.created_at, r.output, r.n_prompt_tokens, r.n_new_tokens)
            for r in results
        }
        for s in session.scalars(select(Score).where(Score.evaluation_id == evaluation_id)):
            rows[(s.example_key, s.metric)] = (
                s.id,
                s.value,
                s.evaluator,
                s.evaluator_version,
                s.evaluator_options,
            )
    return rows


def _values(rows: Rows) -> dict[tuple[str, ...], tuple[Any, ...]]:
    """Rows without what differs between two databases (ids, times); floats to 6 places."""
    out: dict[tuple[str, ...], tuple[Any, ...]] = {}
    for key, row in rows.items():
        if len(key) == 1:  # an output: (id, created_at, output, n_prompt, n_new)
            out[key] = row[2:]
        else:  # a score: (id, value, evaluator, version, options)
            out[key] = (round(row[1], 6), *row[2:])
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _aggregates(factory: sessionmaker[Session], evaluation_id: int) -> list[tuple[Any, ...]]:
    with unit_of_work(factory, write=False) as session:
        rows = session.scalars(select(Aggregate).where(Aggregate.evaluation_id == evaluation_id))
        return sorted(
            (a.metric, a.scope, a.scope_value, a.n, *map(_rounded, (a.mean, a.ci_low, a.ci_high)))
            for a in rows
        )


def _count(factory: sessionmaker[Session], column: Any, evaluation_id: int) -> int:
    with unit_of_work(factory, write=False) as session:
        return int(session.scalar(select(func.count()).where(column == evaluation_id)) or 0)


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    adapters_root: Path,
    capitals_adapter: Path,
) -> Iterator[tuple[dict[tuple[str, ...], tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """The candidate's rows and aggregates from a run nobody interrupted (own SQLite file)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    settings = model_settings(
        tmp,
        f"sqlite:///{tmp / 'ref.db'}",
        checkpoint_roots=[adapters_root],
        model_roots=[tiny_base.parent],
        chunk_size=3,
        batch_size=4,
    )
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": "Bearer " + settings.admin_token_file.read_text().strip()}
        client.post(
            "/v1/datasets/qa/versions",
            content=dataset_jsonl(),
            headers={**auth, "Content-Type": "application/x-ndjson"},
        ).raise_for_status()
        body = {"name": "tiny", "base_model": str(tiny_base)}
        client.post("/v1/families", json=body, headers=auth).raise_for_status()
        submitted = client.post(
            "/v1/candidates",
            json={
                "family": "tiny",
                "checkpoint": str(capitals_adapter),
                "kind": "lora",
                "learning_rate": 1e-2,
                "evaluate": True,
                "dataset": "qa",
            },
            headers=auth,
        ).json()
        factory = client.app.state.sessionmaker  # type: ignore[attr-defined]
        assert InProcessWorker(settings, factory).run_pending() == 2
        evaluation_id = submitted["evaluation_id"]
        yield _values(_rows(factory, evaluation_id)), _aggregates(factory, evaluation_id)


def _env(settings: Settings, phase: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TUNEGATE_DATA_DIR=str(settings.data_dir),
        TUNEGATE_DATABASE_URL=settings.sqlalchemy_url,
        TUNEGATE_CHECKPOINT_ROOTS=os.pathsep.join(map(str, settings.checkpoint_roots)),
        TUNEGATE_MODEL_ROOTS=os.pathsep.join(map(str, settings.model_roots)),
        TUNEGATE_CHUNK_SIZE=str(settings.chunk_size),
        TUNEGATE_SCORE_CHUNK_SIZE="3",
        TUNEGATE_BATCH_SIZE=str(settings.batch_size or "auto"),
        TUNEGATE_LEASE_SECONDS=str(LEASE_SECONDS),
        TUNEGATE_HEARTBEAT_SECONDS="1",
        TEST_KILL_AT=phase,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def _kill_inside(settings: Settings, phase: str, evaluation_id: int, log: Path) -> int:
    """Run a worker process until it reaches ``phase`` of ``evaluation_id``; SIGKILL it
    there (or after 240 s, whatever it is doing). Returns the count it printed (examples
    done, outputs scored, aggregate rows)."""
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.engine.worker_process"],
            cwd=ROOT,
            env=_env(settings, phase),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    timer = threading.Timer(240, proc.kill)  # a worker that hangs never prints: end it
    timer.start()
    reached: int | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(f"{phase} {evaluation_id} "):
                reached = int(line.split()[2])
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    assert reached is not None, f"the worker never reached {phase}:\n{log.read_text()[-3000:]}"
    return reached


@pytest.mark.parametrize("phase", ["generation", "scoring", "aggregates"])
def test_worker_killed_inside_a_phase_resumes_to_the_uninterrupted_rows(
    phase: str,
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    capitals_adapter: Path,
    tmp_path: Path,
    uninterrupted: tuple[dict[tuple[str, ...], tuple[Any, ...]], list[tuple[Any, ...]]],
) -> None:
    reference_rows, reference_aggregates = uninterrupted
    factory = client.app.state.sessionmaker  # type: ignore[attr-defined]
    make_family()
    submitted = submit(capitals_adapter, lr=1e-2)
    evaluation_id = submitted["evaluation_id"]
    # the baseline first, here, so the doomed worker only ever holds the candidate
    context = worker.context
    assert run_evaluation(submitted["baseline_evaluation_id"], context) == "succeeded"
    if phase == "scoring":
        # outputs stored, scored by two evaluators only; a rescore with them all then
        # scores every stored output again, in chunks, without a forward pass
        assert run_evaluation(evaluation_id, context) == "succeeded"
        for names in (SUBSET, registry.default_evaluators()):
            rescored = client.post(
                f"/v1/evaluations/{evaluation_id}/rescore", json={"evaluators": names}, headers=auth
            )
            assert rescored.status_code == 200, rescored.text
            if names == SUBSET:
                assert run_evaluation(evaluation_id, context) == "succeeded"
    stored = _rows(factory, evaluation_id)

    reached = _kill_inside(settings, phase, evaluation_id, tmp_path / "worker.log")

    half = client.get(f"/v1/evaluations/{evaluation_id}", headers=auth).json()
    assert half["status"] == "running"  # the dead worker never got to its finally
    total = half["progress"]["total"]
    before = _rows(factory, evaluation_id)
    outputs_before = sum(len(key) == 1 for key in before)
    if phase == "generation":  # some chunks committed, not all
        assert 0 < reached == half["progress"]["done"] == outputs_before < total
    else:
        assert half["progress"]["done"] == outputs_before == total
    if phase == "scoring":  # some of the missing scores committed, not all
        assert 0 < reached < total
        assert len(stored) < len(before) < len(reference_rows)
    if phase == "aggregates":  # flushed, never committed
        assert reached > 0
        assert _count(factory, Aggregate.evaluation_id, evaluation_id) == 0

    # the recovery sweep, at a time after the dead worker's lease ran out
    later = utcnow() + timedelta(seconds=LEASE_SECONDS + 1)
    assert expire_stale_leases(factory, now=later) == [evaluation_id]
    with counting_forward_passes() as count:
        assert InProcessWorker(settings, factory).run_pending() == 1

    done = client.get(f"/v1/evaluations/{evaluation_id}", headers=auth).json()
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"]["done"] == total
    # resumed, not restarted: the model generated exactly the examples left
    assert count.examples_generated == total - outputs_before
    after = _rows(factory, evaluation_id)
    # the rows written before the kill are the same rows, untouched
    assert {key: after[key] for key in before} == before
    # nothing lost, nothing twice (the keys are unique), the same as never interrupted
    assert _values(after) == reference_rows
    assert _aggregates(factory, evaluation_id) == reference_aggregates
    # one current decision (a rescore supersedes the ones before it: history, not twice)
    with unit_of_work(factory, write=False) as session:
        current = session.scalar(
            select(func.count()).where(
                GateDecision.candidate_evaluation_id == evaluation_id,
                GateDecision.superseded_at.is_(None),
            )
        )
    assert current == 1
