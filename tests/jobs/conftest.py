"""Fixtures for evaluation-job tests: a tiny-Llama family, a small dataset, real adapters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.settings import Settings
from tests.adapters import PIRATE, trained_adapter
from tests.models import cache_root, tiny_llama_dir

QUESTIONS = [
    ("What is the capital of France?", "Paris.", "in"),
    ("What is the capital of Italy?", "Rome.", "in"),
    ("What is the capital of Japan?", "Tokyo.", "in"),
    ("What is the capital of Spain?", "Madrid.", "in"),
    ("What colour is the sky on a clear day?", "Blue.", "out"),
    ("How many legs does a spider have?", "Eight.", "out"),
    ("What do bees make?", "Honey.", "out"),
    ("What is two plus two?", "Four.", "out"),
]


def dataset_jsonl(max_new_tokens: int = 6, n_repeat: int = 1) -> str:
    lines: list[dict[str, Any]] = [
        {"generation": {"max_new_tokens": max_new_tokens, "chat_template": True}}
    ]
    for r in range(n_repeat):
        for i, (q, a, domain) in enumerate(QUESTIONS):
            lines.append(
                {
                    "id": f"q{r}-{i}",
                    "input": q if r == 0 else f"{q} (take {r})",
                    "reference": a,
                    "context": f"Fact: {a}",
                    "domain": domain,
                    "cohort": "capitals" if domain == "in" else "general",
                }
            )
    lines.append(
        {
            "id": "json-1",
            "input": 'Reply with JSON {"ok": true}.',
            "json_schema": {"type": "object", "required": ["ok"]},
            "cohort": "json",
        }
    )
    lines.append({"heldout": "The quick brown fox jumps over the lazy dog. " * 4})
    return "\n".join(json.dumps(line) for line in lines) + "\n"


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    return tiny_llama_dir()


@pytest.fixture(scope="session")
def adapters_root() -> Path:
    root = cache_root() / "adapters"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def capitals_adapter(adapters_root: Path) -> Path:
    return trained_adapter("tiny", "capitals", lr=1e-2, steps=5)


@pytest.fixture(scope="session")
def pirate_adapter(adapters_root: Path) -> Path:
    return trained_adapter("tiny", "pirate", lr=1e-2, steps=5, data=PIRATE)


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
