"""A worker killed mid-evaluation: the next one resumes, not restarts — the rows written
before the kill stay as they were (same ``created_at``), the model generates only the
examples left (counted by a forward hook on the model), and the rows equal an
uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.api.app import create_app
from service.db.models import ExampleResult, Score
from service.db.session import make_engine, make_sessionmaker
from service.engine.job import run_evaluation
from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from tests.forward_count import counting_forward_passes

ROOT = Path(__file__).resolve().parents[2]


def _rows(settings: Settings, evaluation_id: int) -> tuple[list[tuple[Any, ...]], list[str]]:
    engine = make_engine(settings.sqlalchemy_url)
    with make_sessionmaker(engine)() as session:
        results = session.scalars(
            select(ExampleResult).where(ExampleResult.evaluation_id == evaluation_id)
        ).all()
        scores = session.scalars(select(Score).where(Score.evaluation_id == evaluation_id)).all()
        keys = [r.example_key for r in results]
        rows = sorted(
            [(r.example_key, r.output) for r in results]
            + [(s.example_key, s.metric, round(s.value, 6), s.evaluator_version) for s in scores],
            key=repr,
        )
    engine.dispose()
    return rows, keys


def _written(settings: Settings, evaluation_id: int) -> dict[str, tuple[datetime, str]]:
    """example key → (created_at, output) of the rows stored so far."""
    engine = make_engine(settings.sqlalchemy_url)
    with make_sessionmaker(engine)() as session:
        rows = session.scalars(
            select(ExampleResult).where(ExampleResult.evaluation_id == evaluation_id)
        ).all()
        written = {r.example_key: (r.created_at, r.output) for r in rows}
    engine.dispose()
    return written


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TUNEGATE_DATA_DIR=str(settings.data_dir),
        TUNEGATE_DATABASE_URL=settings.sqlalchemy_url,
        TUNEGATE_CHECKPOINT_ROOTS=os.pathsep.join(map(str, settings.checkpoint_roots)),
        TUNEGATE_MODEL_ROOTS=os.pathsep.join(map(str, settings.model_roots)),
        TUNEGATE_CHUNK_SIZE=str(settings.chunk_size),
        TUNEGATE_BATCH_SIZE=str(settings.batch_size or "auto"),
        TUNEGATE_LEASE_SECONDS="5",
        TUNEGATE_HEARTBEAT_SECONDS="1",
        TEST_PAUSE_AFTER_CHUNK="600",  # killed right after its first chunk
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def test_killed_worker_resumes_without_losing_or_duplicating_rows(
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    capitals_adapter: Path,
    tmp_path: Path,
) -> None:
    make_family(n_repeat=2)
    submitted = submit(capitals_adapter, lr=1e-2)
    evaluation_id = submitted["evaluation_id"]
    total = client.get(f"/v1/evaluations/{evaluation_id}", headers=auth).json()["progress"]
    # the baseline first, here, so the doomed worker only ever holds the candidate
    worker_context = InProcessWorker(settings, client.app.state.sessionmaker).context  # type: ignore[attr-defined]
    assert run_evaluation(submitted["baseline_evaluation_id"], worker_context) == "succeeded"

    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.worker_process"],
        cwd=ROOT,
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            if line.startswith(f"chunk {evaluation_id} ") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    half = client.get(f"/v1/evaluations/{evaluation_id}", headers=auth).json()
    assert half["status"] == "running"  # the dead worker never got to its finally
    assert 0 < half["progress"]["done"] < half["progress"]["total"]
    before = _written(settings, evaluation_id)
    assert len(before) == half["progress"]["done"]

    time.sleep(5.5)  # the dead worker's lease expires
    fresh = InProcessWorker(
        settings.model_copy(update={"lease_seconds": 5}),
        client.app.state.sessionmaker,  # type: ignore[attr-defined]
    )
    with counting_forward_passes() as count:
        assert fresh.run_pending() == 1
    done = client.get(f"/v1/evaluations/{evaluation_id}", headers=auth).json()
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"]["done"] == done["progress"]["total"] == total["total"]
    resumed_rows, keys = _rows(settings, evaluation_id)
    assert not [k for k, n in Counter(keys).items() if n > 1]  # nothing written twice
    # resumed, not restarted: the model generated exactly the examples left ...
    assert count.examples_generated == total["total"] - len(before) > 0
    # ... and the rows written before the kill are the same rows, untouched
    after = _written(settings, evaluation_id)
    assert {key: after[key] for key in before} == before

    # the same candidate, uninterrupted, in a database of its own
    reference = settings.model_copy(
        update={"data_dir": tmp_path / "ref", "database_url": f"sqlite:///{tmp_path / 'ref.db'}"}
    )
    with TestClient(create_app(reference)) as ref_client:
        ref_auth = {"Authorization": "Bearer " + reference.admin_token_file.read_text().strip()}
        ref_client.post(
            "/v1/datasets/qa/versions",
            content=client.get("/v1/datasets/qa/versions/latest/jsonl", headers=auth).text,
            headers={**ref_auth, "Content-Type": "application/x-ndjson"},
        )
        base = client.get("/v1/families/tiny", headers=auth).json()["base_model"]
        ref_client.post("/v1/families", json={"name": "tiny", "base_model": base}, headers=ref_auth)
        ref = ref_client.post(
            "/v1/candidates",
            json={
                "family": "tiny",
                "checkpoint": str(capitals_adapter),
                "kind": "lora",
                "learning_rate": 1e-2,
                "evaluate": True,
                "dataset": "qa",
            },
            headers=ref_auth,
        ).json()
        InProcessWorker(reference, ref_client.app.state.sessionmaker).run_pending()  # type: ignore[attr-defined]
        reference_rows, _ = _rows(reference, ref["evaluation_id"])
    assert resumed_rows == reference_rows
