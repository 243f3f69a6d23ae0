"""Promotion through the API: refused without a passing decision, audited, admin override."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.decisions.conftest import COMPARATIVE_RULES, NO_MORE_REPETITION

FAMILY = "bot"
SILENCE = {"kind": "threshold", "metric": "empty_output", "max": 0.05}
"""Fails the random tiny Llama itself: it answers every prompt with an empty string."""


def test_promotion_follows_the_gate_and_is_audited(
    client: TestClient,
    auth: dict[str, str],
    token_for: Callable[[str], str],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    run_worker: Callable[[], int],
    get: Callable[[str], Any],
    tiny_base: Path,
    pirate_adapter: Path,
) -> None:
    policy = {"rules": [*COMPARATIVE_RULES, NO_MORE_REPETITION]}
    setup = make_family(FAMILY, policy=policy)
    base_id = setup["family"]["base_candidate_id"]
    promoter = {"Authorization": f"Bearer {token_for('promote')}"}
    reader = {"Authorization": f"Bearer {token_for('read')}"}
    submitter = {"Authorization": f"Bearer {token_for('submit')}"}

    def promote(headers: dict[str, str], **body: Any) -> Any:
        return client.post(f"/v1/families/{FAMILY}/promote", json=body, headers=headers)

    same = submit(tiny_base, family=FAMILY, kind="full", name="unchanged")
    refused = promote(promoter, candidate_id=same["id"])  # queued: no decision yet
    assert refused.status_code == 409
    assert refused.json()["error"] == "GateNotPassed"
    assert "no gate decision" in refused.json()["detail"]
    assert run_worker() == 2
    decision = get(f"/v1/decisions?evaluation_id={same['evaluation_id']}")
    assert decision["verdict"] == "pass", decision["summary"]

    for headers in (reader, submitter):
        denied = promote(headers, candidate_id=same["id"])
        assert denied.status_code == 403
        assert denied.json()["error"] == "PermissionDenied"
    assert promote({}, candidate_id=same["id"]).status_code == 401
    assert promote(promoter, candidate_id=999_999).status_code == 404
    missing = client.post("/v1/families/nope/promote", json={"candidate_id": 1}, headers=auth)
    assert (missing.status_code, missing.json()["error"]) == (404, "FamilyNotFound")
    assert get(f"/v1/families/{FAMILY}")["aliases"] == {}

    # A pass under an older policy does not count: the pair is judged again under the current one.
    stricter = client.put(
        f"/v1/families/{FAMILY}/policy", json={"rules": [*policy["rules"], SILENCE]}, headers=auth
    )
    assert stricter.status_code == 201
    assert stricter.json()["version"] == 2
    refused = promote(promoter, candidate_id=same["id"])
    assert refused.status_code == 409, refused.text
    assert "threshold:empty_output:all" in refused.json()["detail"]
    restored = client.put(f"/v1/families/{FAMILY}/policy", json=policy, headers=auth)
    assert restored.json()["version"] == 3

    first = promote(promoter, candidate_id=same["id"])
    assert first.status_code == 201, first.text
    moved = first.json()
    assert moved["family"] == FAMILY
    assert moved["alias"] == "production"
    assert (moved["from_candidate_id"], moved["to_candidate_id"]) == (None, same["id"])
    rejudged = get(f"/v1/decisions/{moved['decision_id']}")
    assert rejudged["policy_version"] == 3
    assert rejudged["verdict"] == "pass"
    assert rejudged["id"] != decision["id"]
    assert rejudged["candidate_evaluation_id"] == same["evaluation_id"]
    assert moved["override"] is False
    assert moved["reason"] is None
    assert get(f"/v1/families/{FAMILY}")["aliases"] == {"production": same["id"]}
    aliases = get(f"/v1/families/{FAMILY}/aliases")
    assert [(a["name"], a["candidate_id"]) for a in aliases] == [("production", same["id"])]
    again = promote(promoter, candidate_id=same["id"])
    assert again.status_code == 422  # already there: nothing to move

    # New candidates are compared with production now; its evaluation is reused as baseline.
    pirate = submit(pirate_adapter, family=FAMILY, lr=1e-2, name="pirate")
    assert pirate["baseline_evaluation_id"] == same["evaluation_id"]
    assert (
        get(f"/v1/evaluations/{pirate['baseline_evaluation_id']}")["candidate"]["id"] == same["id"]
    )
    assert run_worker() == 1
    failed = get(f"/v1/decisions?evaluation_id={pirate['evaluation_id']}")
    assert failed["verdict"] == "fail"
    assert failed["policy_version"] == 3
    assert failed["baseline_evaluation_id"] == same["evaluation_id"]

    refused = promote(promoter, candidate_id=pirate["id"])
    assert refused.status_code == 409
    assert refused.json()["error"] == "GateNotPassed"
    assert f"gate decision {failed['id']}" in refused.json()["detail"]
    no_admin = promote(promoter, candidate_id=pirate["id"], override=True, reason="hotfix")
    assert no_admin.status_code == 403
    assert no_admin.json()["error"] == "PermissionDenied"
    for reason in (None, "", "   "):
        no_reason = promote(auth, candidate_id=pirate["id"], override=True, reason=reason)
        assert no_reason.status_code == 422, reason
    assert get(f"/v1/families/{FAMILY}")["aliases"] == {"production": same["id"]}

    forced = promote(auth, candidate_id=pirate["id"], override=True, reason="pirate week")
    assert forced.status_code == 201, forced.text
    record = forced.json()
    assert record["override"] is True
    assert record["reason"] == "pirate week"
    assert (record["from_candidate_id"], record["to_candidate_id"]) == (same["id"], pirate["id"])
    assert record["decision_id"] == failed["id"]
    assert get(f"/v1/families/{FAMILY}")["aliases"] == {"production": pirate["id"]}

    history = get(f"/v1/promotions?family={FAMILY}")["items"]
    assert [h["id"] for h in history] == [record["id"], moved["id"]]  # newest first
    assert history[0] == record
    assert history[1] == moved
    assert history[0]["actor"] != history[1]["actor"]  # admin, then the promote token
    assert "test-promote" in history[1]["actor"]
    for entry in history:
        assert datetime.fromisoformat(entry["created_at"]).utcoffset() == timedelta(0)
    assert base_id not in {h["to_candidate_id"] for h in history}
    assert client.get(f"/v1/promotions?family={FAMILY}", headers=reader).status_code == 200

    # The family's decision timeline: every decision on its candidates, newest first.
    timeline = get(f"/v1/families/{FAMILY}/decisions")
    ids = [entry["decision_id"] for entry in timeline["items"]]
    assert ids == [failed["id"], rejudged["id"], decision["id"]]
    assert timeline["total"] == 3
    assert [e["verdict"] for e in timeline["items"]] == ["fail", "pass", "pass"]
    assert [e["policy_version"] for e in timeline["items"]] == [3, 3, 1]
    assert timeline["items"][0]["candidate_id"] == pirate["id"]
    assert timeline["items"][0]["candidate_name"] == "pirate"
    assert timeline["items"][0]["learning_rate"] == 1e-2
    second = get(f"/v1/families/{FAMILY}/decisions?offset=1&limit=1")
    assert [e["decision_id"] for e in second["items"]] == [rejudged["id"]]
    assert second["total"] == 3
    gone = client.get("/v1/families/nope/decisions", headers=reader)
    assert (gone.status_code, gone.json()["error"]) == (404, "FamilyNotFound")
