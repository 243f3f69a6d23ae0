"""An adapter trained on another base is refused before any weight is loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.engine.job import run_evaluation
from service.worker.inprocess import InProcessWorker
from tests.models import smollm2_dir


def test_adapter_for_another_base_fails_its_evaluation_with_the_reason(
    client: TestClient,
    auth: dict[str, str],
    get: Callable[[str], Any],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    capitals_adapter: Path,  # trained on the tiny Llama (hidden size 64)
) -> None:
    make_family()  # the dataset (and a tiny family we do not use)
    created = client.post(
        "/v1/families", json={"name": "smol", "base_model": str(smollm2_dir())}, headers=auth
    )
    assert created.status_code == 201, created.text
    submitted = submit(capitals_adapter, family="smol", lr=1e-2)
    assert run_evaluation(submitted["evaluation_id"], worker.context) == "failed"
    ev = get(f"/v1/evaluations/{submitted['evaluation_id']}")
    assert ev["status"] == "failed"
    assert ev["error"].startswith("CheckpointRejected")
    assert "trained on a different base model" in ev["error"]
    assert worker.context.model_pool().base_loads == 0  # refused before loading anything
