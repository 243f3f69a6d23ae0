"""Fixtures for evaluation-job tests: a tiny-Llama family, a small dataset, real adapters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.settings import Settings
from tests.tiny_setup import dataset_jsonl


@pytest.fixture
def settings(  # overrides the root fixture: models and adapters under real roots
    tmp_path: Path, db_url: str, tiny_base: Path, adapters_root: Path
) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        checkpoint_roots=[adapters_root],
        model_roots=[tiny_base.parent],
        queue="none",
        chunk_size=3,
        batch_size=4,
    )


@pytest.fixture
def setup_family(
    client: TestClient, auth: dict[str, str], tiny_base: Path
) -> Callable[..., dict[str, Any]]:
    def make(name: str = "tiny", dataset: str = "qa", **kw: Any) -> dict[str, Any]:
        pushed = client.post(
            f"/v1/datasets/{dataset}/versions",
            content=dataset_jsonl(**kw),
            headers={**auth, "Content-Type": "application/x-ndjson"},
        )
        assert pushed.status_code in (200, 201), pushed.text
        family = client.post(
            "/v1/families", json={"name": name, "base_model": str(tiny_base)}, headers=auth
        )
        assert family.status_code == 201, family.text
        return {"dataset": pushed.json(), "family": family.json()}

    return make


@pytest.fixture
def submit(client: TestClient, auth: dict[str, str]) -> Callable[..., dict[str, Any]]:
    def post(
        checkpoint: Path, *, family: str = "tiny", lr: float = 1e-4, **kw: Any
    ) -> dict[str, Any]:
        body = {
            "family": family,
            "checkpoint": str(checkpoint),
            "kind": "lora",
            "learning_rate": lr,
            "evaluate": True,
            "dataset": "qa",
            **kw,
        }
        response = client.post("/v1/candidates", json=body, headers=auth)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return post
