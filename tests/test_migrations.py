"""Alembic builds the schema from nothing, matches the ORM models, and tears it down again.

Runs on a fresh SQLite file and on a fresh PostgreSQL database (not ``db_url``, which
is already migrated).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from service.db import models  # noqa: F401  (registers the tables)
from service.db.base import Base
from service.db.migrate import alembic_config, downgrade_to_base, upgrade_to_head
from tests.services import POSTGRES_ADMIN_URL, postgres_unavailable, require


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    require(postgres_unavailable())
    name = f"tunegate_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_check_downgrade_upgrade(empty_db_url: str) -> None:
    models_tables = set(Base.metadata.tables)
    assert _tables(empty_db_url) == set()

    upgrade_to_head(empty_db_url)
    assert _tables(empty_db_url) == models_tables | {"alembic_version"}
    # Autogenerate finds nothing to do: the revisions and the ORM models agree.
    command.check(alembic_config(empty_db_url))

    downgrade_to_base(empty_db_url)
    assert _tables(empty_db_url) == {"alembic_version"}

    upgrade_to_head(empty_db_url)
    assert _tables(empty_db_url) == models_tables | {"alembic_version"}
    command.check(alembic_config(empty_db_url))
