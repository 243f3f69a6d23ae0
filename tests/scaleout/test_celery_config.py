"""The Celery app's settings, the dispatcher on the real Redis, and a worker on RabbitMQ."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.db.migrate import upgrade_to_head
from service.settings import Settings
from service.worker.celery_app import TASK_NAME, QueueOptions, make_celery
from service.worker.celery_dispatch import CeleryDispatcher
from tests.scaleout.stack import Stack, purge_queue
from tests.services import AMQP_URL, REDIS_URL, rabbitmq_unavailable, redis_unavailable, require


def test_one_evaluation_at_a_time_late_acks_and_long_visibility() -> None:
    app = make_celery(
        Settings(broker_url="redis://redis:6379/0"), QueueOptions("evals", 7200, 30.0)
    )
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_concurrency == 1
    assert conf.worker_pool == "solo"
    assert conf.task_default_queue == "evals"
    assert conf.broker_transport_options == {"visibility_timeout": 7200}
    task = app.tasks[TASK_NAME]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.ignore_result is True


def test_amqp_broker_has_no_redis_options_and_no_heartbeat() -> None:
    app = make_celery(Settings(broker_url=AMQP_URL), QueueOptions("evals", 7200, 30.0))
    assert app.conf.broker_transport_options == {}
    assert app.conf.broker_heartbeat == 0


@pytest.fixture
def redis_queue() -> Iterator[str]:
    require(redis_unavailable())
    queue = f"tunegate-test-{uuid.uuid4().hex[:8]}"
    yield queue
    purge_queue(queue)


def test_dispatcher_publishes_the_evaluation_id_only(
    redis_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNEGATE_CELERY_QUEUE", redis_queue)
    dispatcher = CeleryDispatcher(Settings(broker_url=REDIS_URL))
    dispatcher.start()
    dispatcher.enqueue(42)
    dispatcher.stop()

    client = redis.Redis.from_url(REDIS_URL)
    raw = client.lpop(redis_queue)
    assert client.llen(redis_queue) == 0
    client.close()
    assert isinstance(raw, bytes)
    message = json.loads(raw)
    assert message["headers"]["task"] == TASK_NAME
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([42], {})


def test_unreachable_broker_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TUNEGATE_CELERY_QUEUE", "nowhere")
    dispatcher = CeleryDispatcher(Settings(broker_url="redis://127.0.0.1:1/0"))
    with caplog.at_level(logging.ERROR, logger="tunegate.dispatch"):
        dispatcher.enqueue(7)
    dispatcher.stop()
    assert "could not publish evaluation 7" in caplog.text
    assert "stays queued" in caplog.text


def test_worker_consumes_and_acks_from_rabbitmq(tmp_path: Path) -> None:
    """``amqp://`` works as well: the worker takes the message, the claim finds no such
    evaluation (a harmless duplicate), and the message is acknowledged."""
    require(rabbitmq_unavailable())
    from kombu import Connection

    url = f"sqlite:///{tmp_path / 'tunegate.db'}"
    upgrade_to_head(url)
    queue = f"tunegate-test-{uuid.uuid4().hex[:8]}"
    stack = Stack(
        root=tmp_path, database_url=url, queue=queue, extra_env={"TUNEGATE_BROKER_URL": AMQP_URL}
    )
    try:
        worker = stack.start_worker("rabbit")
        publisher = make_celery(Settings(broker_url=AMQP_URL), QueueOptions(queue, 3600, 60))
        publisher.send_task(TASK_NAME, args=[424242], queue=queue)
        publisher.close()
        stack.wait_for(
            lambda: "evaluation 424242: skipped" in worker.log.read_text(),
            60,
            "the worker to take the message",
            worker,
        )
        with Connection(AMQP_URL) as conn:
            _, waiting, _ = conn.default_channel.queue_declare(queue, passive=True)
            assert waiting == 0
    finally:
        stack.close()
        with Connection(AMQP_URL) as conn:
            conn.default_channel.queue_delete(queue)
