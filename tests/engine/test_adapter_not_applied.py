"""An adapter that changes nothing fails its evaluation, end to end, before generating."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.worker.inprocess import InProcessWorker
from tests.forward_count import counting_forward_passes


def test_an_adapter_with_no_effect_fails_its_evaluation_with_adapter_not_applied(
    client: TestClient,
    auth: dict[str, str],
    get: Callable[[str], Any],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    fresh_adapter: Path,  # lora_B = 0: the model with it is the base model
) -> None:
    make_family()
    submitted = submit(fresh_adapter, lr=1e-2)
    with counting_forward_passes() as count:
        assert worker.run_pending() == 2  # the baseline, then the candidate

    baseline = get(f"/v1/evaluations/{submitted['baseline_evaluation_id']}")
    evaluation = get(f"/v1/evaluations/{submitted['evaluation_id']}")
    assert baseline["status"] == "succeeded"
    assert evaluation["status"] == "failed"
    assert evaluation["error"].startswith("AdapterNotApplied: ")
    assert "does not change the model" in evaluation["error"]
    assert evaluation["progress"]["done"] == 0
    # the model generated the baseline's examples only: the candidate stopped at the probe
    assert count.examples_generated == baseline["progress"]["total"]
    decision = client.get(f"/v1/decisions?evaluation_id={submitted['evaluation_id']}", headers=auth)
    assert (decision.status_code, decision.json()["error"]) == (409, "EvaluationNotFinished")
