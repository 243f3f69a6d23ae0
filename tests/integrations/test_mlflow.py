"""Each finished evaluation becomes an MLflow run in a local file store: aggregates as
metrics, rate / family / candidate / sweep / dataset digest as params and tags, the
decision as a tag and a JSON artifact."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from service.cli.embedded import EmbeddedServer
from service.settings import Settings
from tests.cli.conftest import TEST_POLICY, dataset_jsonl
from tests.models import tiny_llama_dir


def test_evaluations_are_logged_as_mlflow_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = pytest.importorskip("mlflow.tracking", reason="the mlflow extra")
    MlflowClient = tracking.MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants it for file stores
    store = f"file://{tmp_path / 'mlruns'}"
    tiny = tiny_llama_dir()
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(tiny, checkpoints / "same-weights")
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'tunegate.db'}",
        checkpoint_roots=[checkpoints],
        model_roots=[tiny.parent],
        queue="inprocess",
        mlflow_tracking_uri=store,
        mlflow_poll_seconds=0.2,
    )
    with (
        EmbeddedServer(settings) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}
        ) as http,
    ):
        version = http.post(
            "/v1/datasets/ds/versions",
            content=dataset_jsonl(),
            headers={"Content-Type": "application/x-ndjson"},
        ).json()
        assert http.post("/v1/families", json={"name": "tiny", "base_model": str(tiny)}).is_success
        assert http.put(
            "/v1/families/tiny/policy",
            content=TEST_POLICY,
            headers={"Content-Type": "application/yaml"},
        ).is_success
        candidate = http.post(
            "/v1/candidates",
            json={
                "family": "tiny",
                "checkpoint": str(checkpoints / "same-weights"),
                "kind": "full",
                "learning_rate": 3e-4,
                "sweep": "w48",
                "name": "same",
                "evaluate": True,
                "dataset": "ds",
            },
        ).json()
        client = MlflowClient(tracking_uri=store)
        deadline = time.monotonic() + 300
        runs = []
        while time.monotonic() < deadline and len(runs) < 2:
            experiment = client.get_experiment_by_name("tunegate/tiny")
            if experiment is not None:
                found = client.search_runs([experiment.experiment_id])
                runs = [r for r in found if r.info.status == "FINISHED"]
            time.sleep(0.3)
        assert len(runs) == 2
        evaluation = http.get(f"/v1/evaluations/{candidate['evaluation_id']}").json()
        decision_id = evaluation["gate_decision_id"]

    by_role = {run.data.params["role"]: run for run in runs}
    run = by_role["candidate"]
    assert run.info.status == "FINISHED"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert (params["learning_rate"], params["family"], params["sweep"]) == ("0.0003", "tiny", "w48")
    assert params["candidate_id"] == str(candidate["id"])
    assert params["dataset"] == "ds@1"
    assert params["dataset_digest"] == version["digest"]
    assert tags["tunegate.sweep"] == "w48"
    assert (tags["tunegate.verdict"], tags["tunegate.decision_id"]) == ("pass", str(decision_id))
    aggregates = {
        (a["metric"], a["scope"], a["scope_value"]): a["mean"] for a in evaluation["aggregates"]
    }
    assert metrics["repetition"] == pytest.approx(aggregates[("repetition", "all", "")])
    assert metrics["token_f1.out"] == pytest.approx(aggregates[("token_f1", "domain", "out")])
    assert "perplexity_token" in metrics
    artifact = Path(client.download_artifacts(run.info.run_id, "decision.json", str(tmp_path)))
    decision = json.loads(artifact.read_text())
    assert (decision["id"], decision["verdict"]) == (decision_id, "pass")
    assert any(r["rule_id"].startswith("no_regression:repetition") for r in decision["rules"])
    baseline = by_role["baseline"]
    assert "tunegate.verdict" not in baseline.data.tags
    assert baseline.data.params["candidate_id"] != str(candidate["id"])
