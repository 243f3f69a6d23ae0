"""The learning-rate sweep view through the API, on real adapters with their training logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from service.traininglog import diagnose, parse_training_log
from tests.decisions.conftest import COMPARATIVE_RULES

FAMILY, SWEEP = "sweepy", "2026-w47"
LABELS = {"underfit", "good", "forgetting", "collapse"}
LOOPING = {"kind": "threshold", "metric": "repetition", "max": 0.3}
LIFT_FIELDS = ("in_domain_lift", "lift_ci_low", "lift_ci_high", "ood_delta", "perplexity_ratio")


def test_sweep_rows_are_ordered_labelled_and_diagnosed(
    client: TestClient,
    auth: dict[str, str],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    run_worker: Callable[[], int],
    get: Callable[[str], Any],
    sweep_adapters: dict[float, Path],
    capitals_adapter: Path,
) -> None:
    make_family(FAMILY, policy={"rules": [*COMPARATIVE_RULES, LOOPING]})
    submitted: dict[float, dict[str, Any]] = {}
    for lr in sorted(sweep_adapters, reverse=True):  # submitted out of order on purpose
        log = sweep_adapters[lr] / "training_log.jsonl"
        assert log.is_file(), "train_lora writes training_log.jsonl beside the adapter"
        submitted[lr] = submit(
            sweep_adapters[lr],
            family=FAMILY,
            lr=lr,
            sweep=SWEEP,
            training_log=log.read_text(),
            training_log_filename=log.name,
        )
    submit(capitals_adapter, family=FAMILY, lr=1e-2, sweep="other", evaluate=False, dataset=None)
    # the same weights submitted again: shown once, the later one a repeat of the first
    first = submitted[1e-4]
    repeat = submit(sweep_adapters[1e-4], family=FAMILY, lr=1e-4, sweep=SWEEP)
    pending = get(f"/v1/sweeps/{FAMILY}/{SWEEP}")
    assert [r["status"] for r in pending["rows"]] == ["queued"] * 3
    assert [r["repeats"] for r in pending["rows"]] == [[repeat["id"]], [], []]
    assert pending["rows"][0]["candidate_id"] == first["id"]
    assert pending["recommended_rate"] is None
    assert pending["recommendation_reason"]

    assert run_worker() >= 4  # the baseline and the three runs (+ the repeat, reused)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = client.app.state.engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", record)
    try:
        view = get(f"/v1/sweeps/{FAMILY}/{SWEEP}")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # one query for the three candidates: their numbers are stored with their decisions
    for table in ("scores", "dataset_examples", "aggregates"):
        assert not [s for s in statements if f"FROM {table}" in s], table
    assert len([s for s in statements if "gate_decisions" in s]) == 1, statements
    assert (view["family"], view["sweep"]) == (FAMILY, SWEEP)
    rates = sorted(sweep_adapters)
    assert [r["learning_rate"] for r in view["rows"]] == rates
    for row, lr in zip(view["rows"], rates, strict=True):
        assert row["candidate_id"] == submitted[lr]["id"]
        assert row["evaluation_id"] == submitted[lr]["evaluation_id"]
        assert row["status"] == "succeeded"
        decision = get(f"/v1/decisions/{row['decision_id']}")
        assert row["verdict"] == decision["verdict"]
        assert row["label"] in LABELS
        assert row["label_reason"]
        assert all(field in row for field in LIFT_FIELDS)
        assert row["lift_metric"] == "token_f1"
        assert row["lift_ci_low"] <= row["in_domain_lift"] <= row["lift_ci_high"]
        points = parse_training_log((sweep_adapters[lr] / "training_log.jsonl").read_text())
        assert row["diagnosis"]["label"] == row["training_diagnosis"] == diagnose(points).label
        assert [p["loss"] for p in row["training_log"]] == [p.loss for p in points]

    by_rate = {r["learning_rate"]: r for r in view["rows"]}
    assert {lr: (r["label"], r["verdict"]) for lr, r in by_rate.items()} == {
        1e-4: ("underfit", "pass"),
        3e-3: ("underfit", "pass"),  # six steps: no significant in-domain lift either
        1e-2: ("collapse", "fail"),
    }
    looping = by_rate[1e-2]  # the pirate run answers "KB KB KB ...": its labels say collapse
    assert looping["label"] == "collapse"
    assert looping["verdict"] == "fail"
    assert looping["repetition"] > LOOPING["max"]
    assert f"{looping['repetition']:.4g}" in looping["label_reason"]
    quiet = by_rate[1e-4]  # too low a rate to change anything
    assert quiet["label"] == "underfit"
    assert quiet["in_domain_lift"] == 0.0
    assert quiet["training_diagnosis"] == "plateau"

    rate = view["recommended_rate"]
    assert rate is None  # nothing lifted significantly, so no rate is recommended
    assert rate is None or rate in rates
    if rate is None:
        assert "none showed a significant in-domain lift" in view["recommendation_reason"]
    else:
        assert by_rate[rate]["label"] == "good"
        assert by_rate[rate]["verdict"] == "pass"

    sweeps = get(f"/v1/sweeps/{FAMILY}")
    assert sweeps == [
        {"sweep": SWEEP, "n_candidates": 3, "learning_rates": rates},
        {"sweep": "other", "n_candidates": 1, "learning_rates": [1e-2]},
    ]
    assert get(f"/v1/sweeps/{FAMILY}/no-such-sweep")["rows"] == []
    missing = client.get("/v1/sweeps/nope", headers=auth)
    assert (missing.status_code, missing.json()["error"]) == (404, "FamilyNotFound")
    assert client.get(f"/v1/sweeps/{FAMILY}/{SWEEP}").status_code == 401
