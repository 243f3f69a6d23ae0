"""A job that fails mid-run keeps its rows; retrying it over the API resumes, not restarts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.engine.job import run_evaluation
from service.worker.inprocess import InProcessWorker
from tests.forward_count import counting_forward_passes


def test_failed_evaluation_is_retried_from_its_stored_rows(
    client: TestClient,
    auth: dict[str, str],
    get: Callable[[str], Any],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    capitals_adapter: Path,
) -> None:
    make_family()
    submitted = submit(capitals_adapter, lr=1e-2)
    evaluation_id = submitted["evaluation_id"]
    ctx = worker.context
    assert run_evaluation(submitted["baseline_evaluation_id"], ctx) == "succeeded"

    def crash(ev_id: int, done: int) -> None:
        raise RuntimeError(f"disk full after {done} examples")

    ctx.after_chunk = crash
    assert run_evaluation(evaluation_id, ctx) == "failed"
    failed = get(f"/v1/evaluations/{evaluation_id}")
    assert failed["status"] == "failed"
    assert "disk full" in failed["error"]
    done_before = failed["progress"]["done"]
    assert 0 < done_before < failed["progress"]["total"]

    # only failed/cancelled can be retried; a read token cannot
    assert (
        client.post(
            f"/v1/evaluations/{submitted['baseline_evaluation_id']}/retry", headers=auth
        ).status_code
        == 409
    )
    retried = client.post(f"/v1/evaluations/{evaluation_id}/retry", headers=auth)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "queued"
    assert retried.json()["error"] is None

    ctx.after_chunk = None
    passes = ctx.forward_passes
    with counting_forward_passes() as count:
        assert run_evaluation(evaluation_id, ctx) == "succeeded"
    total = failed["progress"]["total"]
    assert ctx.forward_passes - passes == (total - done_before) + 1  # the rest + perplexity
    assert count.examples_generated == total - done_before  # seen by the model itself
    rows = get(f"/v1/evaluations/{evaluation_id}/results?limit=500")["items"]
    keys = [r["example_key"] for r in rows]
    assert len(keys) == len(set(keys)) == total
    detail = get(f"/v1/evaluations/{evaluation_id}")
    assert detail["attempts"] == 2
    assert detail["gate_decision_id"] is not None


@pytest.mark.parametrize("scope", ["read"])
def test_retry_needs_submit_scope(
    client: TestClient, token_for: Callable[[str], str], scope: str
) -> None:
    headers = {"Authorization": f"Bearer {token_for(scope)}"}
    assert client.post("/v1/evaluations/1/retry", headers=headers).status_code == 403
    assert client.post("/v1/evaluations/1/retry").status_code == 401
