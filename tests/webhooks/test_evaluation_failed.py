"""``evaluation.failed``: queued in the failing finish's own unit of work, delivered signed
to a real local receiver; on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db.models import WebhookDelivery
from service.db.session import unit_of_work
from service.engine import lease, storage
from service.lifecycle import FAILED
from tests.cli.conftest import dataset_jsonl
from tests.webhooks.receiver import receiver, settled_log

Headers = dict[str, str]


def test_a_failed_evaluation_is_announced(
    client: TestClient, auth: Headers, checkpoint_root: Path, tiny_base: Path
) -> None:
    factory = client.app.state.sessionmaker  # type: ignore[attr-defined]
    ndjson = {**auth, "Content-Type": "application/x-ndjson"}
    assert client.post(
        "/v1/datasets/ds/versions", content=dataset_jsonl(), headers=ndjson
    ).is_success
    family = {"name": "bot", "base_model": "smollm2-135m-instruct"}
    assert client.post("/v1/families", json=family, headers=auth).status_code == 201
    shutil.copytree(tiny_base, checkpoint_root / "full")
    with receiver() as hook:
        created = client.post(
            "/v1/webhooks",
            json={"family": "bot", "url": hook.url, "events": ["evaluation.failed"]},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        candidate = client.post(
            "/v1/candidates",
            json={
                "family": "bot",
                "checkpoint": str(checkpoint_root / "full"),
                "learning_rate": 1e-4,
                "evaluate": True,
                "dataset": "ds",
            },
            headers=auth,
        ).json()
        evaluation_id = candidate["evaluation_id"]
        assert lease.claim(factory, evaluation_id, "worker-1", 60)
        with unit_of_work(factory) as session:
            assert storage.finish(session, evaluation_id, "worker-1", FAILED, "CUDA out of memory")
            queued = session.scalars(select(WebhookDelivery)).all()
            assert [d.event for d in queued] == ["evaluation.failed"]

        [request] = hook.wait_for(1)
        assert request.signed_by(secret)
        body = request.json()
        assert body["event"] == "evaluation.failed"
        assert body["family"] == "bot"
        assert body["data"]["evaluation_id"] == evaluation_id
        assert body["data"]["error"] == "CUDA out of memory"
        assert request.headers["X-Tunegate-Delivery"] == body["delivery_id"]

    hook_id = created.json()["id"]
    log = settled_log(client.get, hook_id, headers=auth)
    assert log["total"] == 1
    [entry] = log["items"]
    assert (entry["status"], entry["attempts"], entry["last_status_code"]) == ("delivered", 1, 200)
    listed = client.get("/v1/webhooks?family=bot", headers=auth).json()
    assert [w["id"] for w in listed] == [hook_id]
    assert "secret" not in listed[0]
