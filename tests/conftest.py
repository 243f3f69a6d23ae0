"""Shared fixtures: a real database (SQLite and PostgreSQL), the app, tokens.

Every test that asks for ``db_url`` runs twice: on a fresh SQLite file and on this
machine's PostgreSQL (a database per test module, emptied between tests). When
PostgreSQL is unreachable the Postgres half is skipped with the reason (fails under CI=true).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.api.app import create_app
from service.db.base import Base
from service.db.migrate import upgrade_to_head
from service.settings import Settings
from tests.services import POSTGRES_ADMIN_URL, postgres_unavailable, require
from tests.tiny_setup import dataset_jsonl

_PG_REASON = postgres_unavailable()


@pytest.fixture(scope="module")
def postgres_module_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test module, migrated to head."""
    require(_PG_REASON)
    name = f"tunegate_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade_to_head(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _empty_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tunegate.db'}"
        upgrade_to_head(url)
        return url
    url: str = request.getfixturevalue("postgres_module_url")
    _empty_postgres(url)
    return url


@pytest.fixture
def checkpoint_root(tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints"
    root.mkdir()
    return root


@pytest.fixture
def settings(tmp_path: Path, db_url: str, checkpoint_root: Path) -> Settings:
    """Settings for an app on the test database; evaluations stay queued (queue='none')."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        checkpoint_roots=[checkpoint_root],
        queue="none",
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, migrate=False)) as c:
        yield c


@pytest.fixture
def admin_token(client: TestClient, settings: Settings) -> str:
    return settings.admin_token_file.read_text().strip()


@pytest.fixture
def token_for(client: TestClient) -> Callable[[str], str]:
    """Create a token of the given scope in the app's database."""
    from service.auth import create_token
    from service.db.session import unit_of_work

    def make(scope: str) -> str:
        with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
            return create_token(session, scope=scope, name=f"test-{scope}")

    return make


@pytest.fixture
def auth(admin_token: str) -> dict[str, str]:
    """Headers of the local admin token."""
    return {"Authorization": f"Bearer {admin_token}"}


# --- real small models shared by the model tests (built/trained once per machine) -------


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    from tests.models import tiny_llama_dir

    return tiny_llama_dir()


@pytest.fixture(scope="session")
def adapters_root() -> Path:
    from tests.models import cache_root

    root = cache_root() / "adapters"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def capitals_adapter(adapters_root: Path) -> Path:
    from tests.adapters import trained_adapter

    return trained_adapter("tiny", "capitals", lr=1e-2, steps=5)


@pytest.fixture(scope="session")
def pirate_adapter(adapters_root: Path) -> Path:
    from tests.adapters import PIRATE, trained_adapter

    return trained_adapter("tiny", "pirate", lr=1e-2, steps=5, data=PIRATE)


@pytest.fixture(scope="session")
def fresh_adapter(adapters_root: Path) -> Path:
    """A tiny Llama LoRA saved before any step: lora_B = 0, so it changes nothing."""
    from tests.adapters import trained_adapter

    return trained_adapter("tiny", "fresh", lr=1e-2, steps=0)


# --- the API driven with the tiny Llama (one family helper, one submit helper) ----------

DATASET = "qa"


@pytest.fixture
def make_family(
    client: TestClient, auth: dict[str, str], tiny_base: Path
) -> Callable[..., dict[str, Any]]:
    """Push the tiny question set as dataset ``qa`` (same content: same version) and create a
    family on the tiny Llama; ``dataset_kw`` go to :func:`tests.tiny_setup.dataset_jsonl`."""

    def make(
        name: str = "tiny", *, policy: dict[str, Any] | None = None, **dataset_kw: Any
    ) -> dict[str, Any]:
        pushed = client.post(
            f"/v1/datasets/{DATASET}/versions",
            content=dataset_jsonl(**dataset_kw),
            headers={**auth, "Content-Type": "application/x-ndjson"},
        )
        assert pushed.status_code in (200, 201), pushed.text
        body: dict[str, Any] = {"name": name, "base_model": str(tiny_base)}
        if policy is not None:
            body["policy"] = policy
        family = client.post("/v1/families", json=body, headers=auth)
        assert family.status_code == 201, family.text
        return {"dataset": pushed.json(), "family": family.json()}

    return make


@pytest.fixture
def get(client: TestClient, auth: dict[str, str]) -> Callable[[str], Any]:
    """GET a path with the admin token; asserts 200 and returns the JSON body."""

    def fetch(path: str) -> Any:
        response = client.get(path, headers=auth)
        assert response.status_code == 200, response.text
        return response.json()

    return fetch


@pytest.fixture
def submit(client: TestClient, auth: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Register a checkpoint and queue its evaluation on ``qa``; returns the response."""

    def post(
        checkpoint: Path, *, family: str = "tiny", lr: float = 1e-4, **kw: Any
    ) -> dict[str, Any]:
        body = {
            "family": family,
            "checkpoint": str(checkpoint),
            "kind": "lora",
            "learning_rate": lr,
            "evaluate": True,
            "dataset": DATASET,
            **kw,
        }
        response = client.post("/v1/candidates", json=body, headers=auth)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return post
