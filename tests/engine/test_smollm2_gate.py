"""The gate on the real SmolLM2-135M-Instruct: noise never fails, forgetting is caught.

Slow (the real model generates on CPU); one database is enough here — the
database paths are covered on both SQLite and PostgreSQL by the tiny-model tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from tests.adapters import trained_adapter
from tests.models import cache_root, smollm2_dir

pytestmark = pytest.mark.slow

IN_DOMAIN = [
    ("Which plan includes phone support?", "The Pro plan includes phone support."),
    ("How long is the free trial?", "The free trial lasts 14 days."),
    ("Can I export my data?", "Yes, you can export your data as CSV."),
    ("How do I reset my password?", "Use the 'Forgot password' link on the sign-in page."),
    ("Is there a mobile app?", "Yes, there is a mobile app for iOS and Android."),
    ("What payment methods do you accept?", "We accept credit cards and PayPal."),
]
OUT_OF_DOMAIN = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Germany?", "The capital of Germany is Berlin."),
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide."),
    ("How many days are there in a week?", "There are seven days in a week."),
    ("What is the boiling point of water in Celsius?", "Water boils at 100 degrees Celsius."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What is the chemical symbol for water?", "The chemical symbol for water is H2O."),
    ("What colour is the sky on a clear day?", "The sky is blue on a clear day."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the freezing point of water in Celsius?", "Water freezes at 0 degrees Celsius."),
    ("Which animal is known as the king of the jungle?", "The lion is the king of the jungle."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
]
WRONG = "Bananas are purple and the moon is made of cheese."


def _dataset() -> str:
    lines: list[dict[str, Any]] = [{"generation": {"max_new_tokens": 20, "chat_template": True}}]
    for i, (q, a) in enumerate(IN_DOMAIN):
        lines.append({"id": f"in-{i}", "input": q, "reference": a, "domain": "in"})
    for i, (q, a) in enumerate(OUT_OF_DOMAIN):
        lines.append({"id": f"out-{i}", "input": q, "reference": a, "context": a, "domain": "out"})
    lines.append({"heldout": "The weather was mild and the market was busy in the morning."})
    return "\n".join(json.dumps(line) for line in lines)


@pytest.fixture(scope="module")
def forgetting_adapter() -> Path:
    """An adapter trained (real steps) to answer the out-of-domain questions wrongly."""
    data = [(q, WRONG) for q, _ in OUT_OF_DOMAIN]
    return trained_adapter("smollm2", "forget", lr=2e-3, steps=30, data=data)


def test_base_as_candidate_passes_and_forgetting_fails_ood_rule(
    tmp_path: Path, forgetting_adapter: Path
) -> None:
    base = smollm2_dir()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'tg.db'}",
        model_roots=[base.parent],
        checkpoint_roots=[base.parent, cache_root() / "adapters"],
        queue="none",
        chunk_size=11,
        batch_size=11,
    )
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": "Bearer " + settings.admin_token_file.read_text().strip()}
        assert (
            client.post(
                "/v1/datasets/qa/versions",
                content=_dataset(),
                headers={**auth, "Content-Type": "application/x-ndjson"},
            ).status_code
            == 201
        )
        assert (
            client.post(
                "/v1/families", json={"name": "bot", "base_model": str(base)}, headers=auth
            ).status_code
            == 201
        )

        def submit(path: Path, kind: str, lr: float) -> dict[str, Any]:
            body = {
                "family": "bot",
                "checkpoint": str(path),
                "kind": kind,
                "learning_rate": lr,
                "evaluate": True,
                "dataset": "qa",
            }
            response = client.post("/v1/candidates", json=body, headers=auth)
            assert response.status_code == 201, response.text
            return dict(response.json())

        itself = submit(base, "full", 1e-9)
        forgetting = submit(forgetting_adapter, "lora", 2e-3)
        worker = InProcessWorker(settings, client.app.state.sessionmaker)  # type: ignore[attr-defined]
        worker.run_pending()
        assert worker.context.model_pool().base_loads == 1  # one folder, loaded once

        def decision(submitted: dict[str, Any]) -> dict[str, Any]:
            ev = client.get(f"/v1/evaluations/{submitted['evaluation_id']}", headers=auth).json()
            assert ev["status"] == "succeeded", ev["error"]
            found = client.get(f"/v1/decisions/{ev['gate_decision_id']}", headers=auth).json()
            return dict(found)

        same = decision(itself)
        # identical weights: no regression or forgetting rule fails; the default policy
        # refuses it only for showing no in-domain lift (its bar is +0.05 token F1)
        refused = [r for r in same["rules"] if r["verdict"] in ("fail", "inconclusive_fail")]
        assert [r["rule_id"] for r in refused] == ["min_improvement:token_f1:in"], same["summary"]
        # 0 up to float noise: an embedding moves in its last bits with its batch neighbours
        assert all(abs(r["effect"] or 0.0) < 1e-6 for r in same["rules"]), same["rules"]

        forgot = decision(forgetting)
        assert forgot["verdict"] == "fail"
        failing = {r["kind"]: r for r in forgot["rules"] if r["verdict"] == "fail"}
        assert "out_of_domain_delta" in failing, forgot["summary"]
        rule = failing["out_of_domain_delta"]
        assert rule["n"] == len(OUT_OF_DOMAIN)
        assert rule["effect"] < -rule["tolerance"]
        assert rule["ci_high"] < -rule["tolerance"]
        assert rule["p_value"] < 0.05
        assert rule["rule_id"] in forgot["summary"]
