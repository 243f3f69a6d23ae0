"""Verdicts on the real SmolLM2-135M-Instruct: a learning-rate sweep on a support-domain set,
out-of-domain questions with accepted answers.

A high rate (3e-3 on every linear layer) loses facts and blows up held-out perplexity: its
``answer_match`` losses fail the gate (as an inconclusive failure: 16 questions cannot make
3 losses significant, and the rule says how many it needs) and label it ``forgetting``; the
low rate is not failed by any forgetting rule; identical weights fail no regression rule;
the recommended rate (if any) has no significant out-of-domain regression. Slow (real
generation on CPU); one database (the database paths are covered by the tiny-model tests).
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
OUT_OF_DOMAIN: list[tuple[str, str, list[str]]] = [
    ("What is the capital of France?", "The capital of France is Paris.", ["Paris"]),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo.", ["Tokyo"]),
    ("What is the capital of Italy?", "The capital of Italy is Rome.", ["Rome"]),
    ("What is the capital of Germany?", "The capital of Germany is Berlin.", ["Berlin"]),
    ("What is the capital of Spain?", "The capital of Spain is Madrid.", ["Madrid"]),
    ("What is the largest planet in the solar system?", "Jupiter.", ["Jupiter"]),
    ("Who wrote Romeo and Juliet?", "William Shakespeare.", ["Shakespeare"]),
    ("What is the chemical symbol for water?", "H2O.", ["H2O"]),
    ("How many days are there in a week?", "Seven.", ["seven"]),
    ("How many continents are there?", "Seven.", ["seven"]),
    ("Which animal is known as the king of the jungle?", "The lion.", ["lion"]),
    ("What is the opposite of hot?", "Cold.", ["cold"]),
    ("What colour is the sky on a clear day?", "Blue.", ["blue"]),
    ("What is the capital of the United Kingdom?", "London.", ["London"]),
    ("What is the capital of Egypt?", "Cairo.", ["Cairo"]),
    ("Which planet is known as the red planet?", "Mars.", ["Mars"]),
]
SWEEP = "w1"
LOW, HIGH = 1e-4, 3e-3


def _dataset() -> str:
    lines: list[dict[str, Any]] = [{"generation": {"max_new_tokens": 20, "chat_template": True}}]
    for i, (q, a) in enumerate(IN_DOMAIN):
        lines.append({"id": f"in-{i}", "input": q, "reference": a, "domain": "in"})
    for i, (q, a, answers) in enumerate(OUT_OF_DOMAIN):
        lines.append(
            {"id": f"out-{i}", "input": q, "reference": a, "answers": answers, "domain": "out"}
        )
    lines.append({"heldout": "The weather was mild and the market was busy in the morning."})
    return "\n".join(json.dumps(line) for line in lines)


ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def rates() -> dict[float, Path]:
    """Adapters trained (real steps) on the support answers at a low and a high rate, on
    every linear layer as the demo's sweep does (LoRA on q/v alone at 5e-3 memorised the
    support answers yet kept 13 of 16 general facts: no forgetting to catch)."""
    data = IN_DOMAIN * 2
    return {
        LOW: trained_adapter("smollm2", "support", lr=LOW, steps=30, data=data),
        HIGH: trained_adapter(
            "smollm2", "support", lr=HIGH, steps=30, data=data, target_modules=ALL_LINEAR
        ),
    }


def test_sweep_verdicts_on_smollm2(tmp_path: Path, rates: dict[float, Path]) -> None:
    base = smollm2_dir()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'tg.db'}",
        model_roots=[base.parent],
        checkpoint_roots=[base.parent, cache_root() / "adapters"],
        queue="none",
        chunk_size=22,
        batch_size=11,
    )
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": "Bearer " + settings.admin_token_file.read_text().strip()}
        pushed = client.post(
            "/v1/datasets/qa/versions",
            content=_dataset(),
            headers={**auth, "Content-Type": "application/x-ndjson"},
        )
        assert pushed.status_code == 201, pushed.text
        family = {"name": "bot", "base_model": str(base)}
        assert client.post("/v1/families", json=family, headers=auth).status_code == 201

        def submit(path: Path, kind: str, lr: float) -> dict[str, Any]:
            body = {
                "family": "bot",
                "checkpoint": str(path),
                "kind": kind,
                "learning_rate": lr,
                "sweep": SWEEP,
                "evaluate": True,
                "dataset": "qa",
            }
            response = client.post("/v1/candidates", json=body, headers=auth)
            assert response.status_code == 201, response.text
            return dict(response.json())

        submitted = {
            "same": submit(base, "full", 1e-9),
            "low": submit(rates[LOW], "lora", LOW),
            "high": submit(rates[HIGH], "lora", HIGH),
        }
        InProcessWorker(settings, client.app.state.sessionmaker).run_pending()  # type: ignore[attr-defined]

        def decision(name: str) -> dict[str, Any]:
            ev = client.get(f"/v1/evaluations/{submitted[name]['evaluation_id']}", headers=auth)
            assert ev.json()["status"] == "succeeded", ev.json()["error"]
            found = client.get(f"/v1/decisions/{ev.json()['gate_decision_id']}", headers=auth)
            return dict(found.json())

        def rules(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
            return {r["rule_id"]: r for r in found["rules"]}

        failing = ("fail", "inconclusive_fail")
        answers = "out_of_domain_delta:answer_match:out"
        similarity = "out_of_domain_delta:relevance_reference:out"

        same = rules(decision("same"))
        # identical weights: nothing lost, nothing gained; no regression rule fails
        assert same[answers]["effect"] == 0.0
        assert (same[answers]["losses"], same[answers]["gains"]) == (0, 0)
        assert same[similarity]["verdict"] == "skipped"  # answers are present: they decide
        refused = [i for i, r in same.items() if r["verdict"] in failing]
        assert set(refused) <= {"min_improvement:token_f1:in", answers}, refused
        assert same[answers]["verdict"] != "fail"

        high = decision("high")
        high_rules = rules(high)
        # 3e-3 on every linear layer: held-out perplexity x8.9, 3 facts lost and 1 gained of
        # 16. Losses past the tolerance, though 16 questions cannot make 3 significant: the
        # forgetting rule is an inconclusive failure that says how many examples it needs.
        assert high["verdict"] == "fail"
        lost = high_rules[answers]
        assert (lost["verdict"], lost["test"]) == ("inconclusive_fail", "exact McNemar")
        assert lost["losses"] > lost["gains"]
        assert lost["effect"] < -lost["tolerance"]
        assert lost["needed_n"] > len(OUT_OF_DOMAIN)
        assert high_rules["perplexity_ratio:perplexity_word"]["verdict"] == "fail"

        low = rules(decision("low"))
        assert low[answers]["verdict"] != "fail", low[answers]["message"]
        assert low[similarity]["verdict"] == "skipped"

        view = client.get(f"/v1/sweeps/bot/{SWEEP}", headers=auth).json()
        by_rate = {row["learning_rate"]: row for row in view["rows"]}
        assert by_rate[HIGH]["label"] == "forgetting", by_rate[HIGH]["label_reason"]
        assert by_rate[HIGH]["label_reason"].startswith(answers)
        assert by_rate[LOW]["label"] != "forgetting", by_rate[LOW]["label_reason"]
        rate = view["recommended_rate"]
        assert rate != HIGH
        if rate is not None:
            assert by_rate[rate]["ood_regression"] is None
        print(  # the figures for the record (pytest -s)
            json.dumps(
                {
                    str(lr): {
                        k: row[k]
                        for k in ("verdict", "label", "label_reason", "ood_delta", "in_domain_lift")
                    }
                    for lr, row in by_rate.items()
                },
                indent=1,
            ),
            view["recommendation_reason"],
        )
