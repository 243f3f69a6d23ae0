"""``decision.made`` and ``promotion`` from a real evaluation on the embedded server, to a
real receiver that fails twice: the event arrives once it recovers (same delivery id,
signed), the delivery log shows every attempt, and a dead endpoint changes nothing."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx

from service.cli.embedded import EmbeddedServer, free_port
from service.settings import Settings
from tests.cli.conftest import TEST_POLICY, dataset_jsonl
from tests.models import tiny_llama_dir
from tests.webhooks.receiver import receiver, settled_log


def _wait_decision(http: httpx.Client, evaluation_id: int) -> dict[str, object]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        evaluation = http.get(f"/v1/evaluations/{evaluation_id}").json()
        if evaluation["gate_decision_id"] is not None:
            decision: dict[str, object] = http.get(
                f"/v1/decisions/{evaluation['gate_decision_id']}"
            ).json()
            return decision
        assert evaluation["status"] in ("queued", "running", "succeeded"), evaluation
        time.sleep(0.2)
    raise AssertionError("no decision in time")


def test_events_survive_a_receiver_that_fails_twice(tmp_path: Path) -> None:
    tiny = tiny_llama_dir()
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(tiny, checkpoints / "same-weights")
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'tunegate.db'}",
        checkpoint_roots=[checkpoints],
        model_roots=[tiny.parent],
        queue="inprocess",
        webhook_backoff_seconds=0.2,
        webhook_poll_seconds=0.05,
    )
    with (
        EmbeddedServer(settings) as server,
        receiver([500, 503]) as hook,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}
        ) as http,
    ):
        pushed = http.post(
            "/v1/datasets/ds/versions",
            content=dataset_jsonl(),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert pushed.is_success
        family = http.post("/v1/families", json={"name": "tiny", "base_model": str(tiny)})
        assert family.status_code == 201, family.text
        policy = http.put(
            "/v1/families/tiny/policy",
            content=TEST_POLICY,
            headers={"Content-Type": "application/yaml"},
        )
        assert policy.is_success, policy.text
        secret = "s3cret-for-the-test-0123456789"
        created = http.post(
            "/v1/webhooks", json={"family": "tiny", "url": hook.url, "secret": secret}
        ).json()
        dead = http.post(
            "/v1/webhooks",
            json={"family": "tiny", "url": f"http://127.0.0.1:{free_port()}/nobody"},
        ).json()

        candidate = http.post(
            "/v1/candidates",
            json={
                "family": "tiny",
                "checkpoint": str(checkpoints / "same-weights"),
                "kind": "full",
                "learning_rate": 1e-4,
                "evaluate": True,
                "dataset": "ds",
            },
        ).json()
        decision = _wait_decision(http, candidate["evaluation_id"])
        assert decision["verdict"] == "pass"  # the dead endpoint changed nothing

        first, second, third = hook.wait_for(3)
        assert first.body == second.body == third.body
        delivery_id = third.json()["delivery_id"]
        assert {r.headers["X-Tunegate-Delivery"] for r in (first, second, third)} == {delivery_id}
        assert all(r.signed_by(secret) for r in (first, second, third))
        assert not third.signed_by("another secret entirely")
        event = third.json()
        assert (event["event"], event["family"]) == ("decision.made", "tiny")
        assert event["data"]["decision_id"] == decision["id"]
        assert event["data"]["verdict"] == "pass"
        assert event["data"]["candidate_id"] == candidate["id"]

        log = settled_log(http.get, created["id"])
        [entry] = log["items"]
        assert (entry["delivery_id"], entry["status"], entry["attempts"]) == (
            delivery_id,
            "delivered",
            3,
        )
        assert [a.get("status_code") for a in entry["log"]] == [500, 503, 200]

        promoted = http.post("/v1/families/tiny/promote", json={"candidate_id": candidate["id"]})
        assert promoted.status_code == 201, promoted.text
        fourth = hook.wait_for(4)[3].json()
        assert fourth["event"] == "promotion"
        assert fourth["data"]["to_candidate_id"] == candidate["id"]
        assert fourth["data"]["decision_id"] == decision["id"]

        dead_log = http.get(f"/v1/webhooks/{dead['id']}/deliveries?status=pending").json()
        assert sorted(d["event"] for d in dead_log["items"]) == ["decision.made", "promotion"]
        [refused] = [d for d in dead_log["items"] if d["event"] == "decision.made"]
        assert refused["attempts"] >= 1  # retried with backoff while the gate went on
        assert "ConnectError" in refused["last_error"]
        assert len(hook.requests) == 4  # delivered once each, no duplicates
