"""End to end through the API with real models: submit → evaluate → scores → decision."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.worker.inprocess import InProcessWorker
from tests.forward_count import counting_forward_passes


def test_candidate_is_evaluated_with_provenance_aggregates_and_decision(
    get: Callable[[str], Any],
    make_family: Callable[..., dict[str, Any]],
    submit_and_run: Callable[..., dict[str, Any]],
    capitals_adapter: Path,
) -> None:
    setup = make_family()
    submitted = submit_and_run(capitals_adapter, lr=1e-2)

    ev = get(f"/v1/evaluations/{submitted['evaluation_id']}")
    assert ev["status"] == "succeeded", ev["error"]
    n = setup["dataset"]["n_examples"]
    assert ev["progress"] == {"done": n, "total": n}
    prov = ev["provenance"]
    assert prov["dataset_digest"] == setup["dataset"]["digest"]
    assert (
        prov["candidate_digests"]["adapter_model.safetensors"]
        == submitted["digests"]["adapter_model.safetensors"]
    )
    assert prov["base_model_digests"]["model.safetensors"]
    assert prov["adapter_probe"]["max_abs_delta"] > 0
    assert {"relevance", "hallucination", "collapse"} <= set(prov["evaluators"])
    assert prov["dtype"] == "float32"
    assert "torch" in prov["libraries"]

    metrics = {(a["metric"], a["scope"], a["scope_value"]) for a in ev["aggregates"]}
    assert ("relevance", "domain", "out") in metrics
    assert ("token_f1", "cohort", "capitals") in metrics
    assert ("perplexity_word", "model", "heldout") in metrics
    ppl = next(a for a in ev["aggregates"] if a["metric"] == "perplexity_token")
    assert ppl["mean"] > 1.0

    items = get(f"/v1/evaluations/{submitted['evaluation_id']}/results")["items"]
    assert len(items) == n
    assert all("relevance" in row["scores"] for row in items)

    assert ev["gate_decision_id"] is not None
    decision = get(f"/v1/decisions/{ev['gate_decision_id']}")
    assert decision["verdict"] in ("pass", "fail")
    # the shipped policy: the random tiny Llama (baseline and candidate alike) answers with
    # empty strings, which the absolute empty-output threshold judges, and five capitals
    # steps bring no significant in-domain lift in token F1
    assert decision["verdict"] == "fail"
    failed = [
        r["rule_id"] for r in decision["rules"] if r["verdict"] in ("fail", "inconclusive_fail")
    ]
    assert failed == ["min_improvement:token_f1:in", "threshold:empty_output:all"]
    assert decision["baseline_evaluation_id"] == submitted["baseline_evaluation_id"]
    assert {r["kind"] for r in decision["rules"]} >= {"no_regression", "perplexity_ratio"}
    page = get(f"/v1/decisions/{ev['gate_decision_id']}/diff?metric=relevance")
    assert page["total"] == n
    deltas = [item["delta"] for item in page["items"]]
    assert deltas == sorted(deltas)  # most regressed first


def test_same_weights_reuse_rows_and_other_weights_do_not(
    get: Callable[[str], Any],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    capitals_adapter: Path,
    pirate_adapter: Path,
) -> None:
    make_family()
    first = submit(capitals_adapter, lr=1e-2, name="first")
    with counting_forward_passes() as first_run:
        worker.run_pending()
    passes_after_first = worker.context.forward_passes
    assert passes_after_first > 0
    n = get(f"/v1/evaluations/{first['evaluation_id']}")["progress"]["total"]
    assert first_run.examples_generated == 2 * n  # the baseline and the candidate

    again = submit(capitals_adapter, lr=1e-2, name="again")
    with counting_forward_passes() as cached_run:
        worker.run_pending()
    assert worker.context.forward_passes == passes_after_first  # zero forward passes
    assert cached_run.passes == 0  # the model itself ran not once
    ev = get(f"/v1/evaluations/{again['evaluation_id']}")
    assert ev["status"] == "succeeded"
    assert ev["provenance"]["reused_from"] == first["evaluation_id"]
    items_a = get(f"/v1/evaluations/{first['evaluation_id']}/results")["items"]
    items_b = get(f"/v1/evaluations/{again['evaluation_id']}/results")["items"]
    assert [(r["example_key"], r["output"], r["scores"]) for r in items_a] == [
        (r["example_key"], r["output"], r["scores"]) for r in items_b
    ]

    other = submit(pirate_adapter, lr=1e-2, name="other")
    with counting_forward_passes() as other_run:
        worker.run_pending()
    assert worker.context.forward_passes > passes_after_first
    assert other_run.examples_generated == n
    ev = get(f"/v1/evaluations/{other['evaluation_id']}")
    assert ev["status"] == "succeeded"
    assert "reused_from" not in ev["provenance"]
