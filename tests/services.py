"""The machine's services tests use (PostgreSQL, Redis, RabbitMQ): where they are, whether
they answer, and what a test does when one does not.

On a developer's machine without them a test *skips* with the reason; under CI
(``CI=true``) the same test *fails* with it, so a broken service never passes CI as
a row of skips.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = os.environ.get(
    "TUNEGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TUNEGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("TUNEGATE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def postgres_unavailable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}: {exc}"
    return None


def redis_unavailable() -> str | None:
    """None when Redis answers, else why not."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis not reachable at {REDIS_URL}: {type(exc).__name__}: {exc}"
    return None


def rabbitmq_unavailable() -> str | None:
    """None when RabbitMQ answers, else why not."""
    from kombu import Connection

    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        return f"RabbitMQ not reachable at {AMQP_URL}: {type(exc).__name__}: {exc}"
    return None


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(*reasons: str | None) -> None:
    """Go on when every service answered (every reason is None); otherwise fail under
    CI, skip elsewhere, with the reasons."""
    missing = "; ".join(r for r in reasons if r)
    if not missing:
        return
    if under_ci():
        pytest.fail(f"CI=true and a service this test needs is down: {missing}", pytrace=False)
    pytest.skip(missing)
