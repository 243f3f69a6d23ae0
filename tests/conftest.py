"""Shared fixtures: a real database (SQLite and PostgreSQL), the app, tokens.

Every test that asks for ``db_url`` runs twice: on a fresh SQLite file and on this
machine's PostgreSQL (a database per test module, emptied between tests). When
PostgreSQL is unreachable the Postgres half is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

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

POSTGRES_ADMIN_URL = os.environ.get(
    "TUNEGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_unavailable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}: {exc}"
    return None


_PG_REASON = _postgres_unavailable()


@pytest.fixture(scope="module")
def postgres_module_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test module, migrated to head."""
    if _PG_REASON:
        pytest.skip(_PG_REASON)
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
