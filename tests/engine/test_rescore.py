"""Outputs and scores cached apart: another evaluator set, version or option re-scores the
stored outputs with zero forward passes (counted by a hook on the model itself)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from evaluators import registry
from evaluators.embeddings import default_embedding_model_path
from service.db.models import GateDecision, Score
from service.engine.context import WorkerContext
from service.engine.generation import generate
from service.engine.job import run_evaluation
from service.engine.sweep_groups import groups
from service.worker.inprocess import InProcessWorker, runnable_ids
from tests.forward_count import counting_forward_passes


def _results(get: Callable[[str], Any], evaluation_id: int) -> dict[str, Any]:
    page = get(f"/v1/evaluations/{evaluation_id}/results?limit=500")
    return {r["example_key"]: (r["output"], r["scores"]) for r in page["items"]}


def _perplexity(evaluation: dict[str, Any]) -> float:
    return next(a["mean"] for a in evaluation["aggregates"] if a["metric"] == "perplexity_token")


@pytest.fixture
def forward_calls(client: TestClient, tiny_base: Path) -> Iterator[Callable[..., list[int]]]:
    """Attach a forward hook to the worker's loaded base model; yields a function that does
    it for a worker and returns the list the hook appends to."""
    handles = []

    def attach(worker: InProcessWorker) -> list[int]:
        calls: list[int] = []
        with worker.context.model_pool().acquire(tiny_base) as loaded:
            model = loaded.model
            if hasattr(model, "peft_config"):
                model = model.get_base_model()
            handles.append(model.register_forward_hook(lambda *_: calls.append(1)))
            generate(loaded, ["hi"], max_new_tokens=2)
        assert calls  # the hook sees what the worker runs
        calls.clear()
        return calls

    yield attach
    for handle in handles:
        handle.remove()


def test_rescore_and_reuse_under_other_evaluators_run_no_forward_pass(
    client: TestClient,
    auth: dict[str, str],
    get: Callable[[str], Any],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    submit_and_run: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    capitals_adapter: Path,
    forward_calls: Callable[..., list[int]],
) -> None:
    make_family()
    first = submit_and_run(capitals_adapter, lr=1e-2, name="first")
    ev_id = first["evaluation_id"]
    original = get(f"/v1/evaluations/{ev_id}")
    before = _results(get, ev_id)
    assert any("relevance" in scores for _, scores in before.values())
    calls = forward_calls(worker)

    # a subset: the other evaluators' scores go, the outputs and perplexity stay
    subset = ["collapse", "reference_match"]
    queued = client.post(
        f"/v1/evaluations/{ev_id}/rescore", json={"evaluators": subset}, headers=auth
    )
    assert queued.status_code == 200, queued.text
    assert queued.json()["status"] == "queued"
    assert worker.run_pending() == 1
    ev = get(f"/v1/evaluations/{ev_id}")
    assert ev["status"] == "succeeded", ev["error"]
    assert set(ev["provenance"]["evaluators"]) == set(subset)
    assert ev["provenance"]["adapter_probe"] == original["provenance"]["adapter_probe"]
    assert _perplexity(ev) == _perplexity(original)
    assert {a["metric"] for a in ev["aggregates"]} < {a["metric"] for a in original["aggregates"]}
    after = _results(get, ev_id)
    for key, (output, scores) in after.items():
        assert output == before[key][0]
        assert scores == {m: v for m, v in before[key][1].items() if m in scores}
        assert "relevance" not in scores
    assert calls == []

    # back to every default evaluator: the dropped ones score the stored outputs again
    defaults = sorted(registry.default_evaluators())
    client.post(f"/v1/evaluations/{ev_id}/rescore", json={"evaluators": defaults}, headers=auth)
    assert worker.run_pending() == 1
    assert _results(get, ev_id) == before
    assert calls == []

    # same weights again under a changed option (the embedding model named explicitly): the
    # outputs and the unchanged evaluators' scores are reused, the others re-scored
    settings = worker.context.settings.model_copy(
        update={"embedding_model": default_embedding_model_path()}
    )
    other = WorkerContext(
        settings=settings, factory=worker.context.factory, pool=worker.context.pool
    )
    again = submit(capitals_adapter, lr=1e-2, name="again")
    assert run_evaluation(again["evaluation_id"], other) == "succeeded"
    ev = get(f"/v1/evaluations/{again['evaluation_id']}")
    assert ev["provenance"]["reused_from"] == ev_id
    assert ev["provenance"]["evaluator_options"]["relevance"]["model_path"]
    reused = _results(get, again["evaluation_id"])
    assert reused.keys() == before.keys()
    for key, (output, scores) in reused.items():
        assert output == before[key][0]
        assert scores == pytest.approx(before[key][1], abs=1e-5)
    with worker.context.factory() as session:
        options = dict(
            session.execute(
                select(Score.evaluator, Score.evaluator_options).where(
                    Score.evaluation_id == again["evaluation_id"]
                )
            ).all()
        )
    assert options["relevance"] != ""  # scored under the new option
    assert options["collapse"] == ""  # copied: no option, same version
    assert calls == []


def test_rescore_refuses_unknown_evaluators_and_unfinished_evaluations(
    client: TestClient,
    auth: dict[str, str],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    capitals_adapter: Path,
) -> None:
    make_family()
    ev_id = submit(capitals_adapter, lr=1e-2)["evaluation_id"]
    busy = client.post(f"/v1/evaluations/{ev_id}/rescore", headers=auth)
    assert busy.status_code == 409
    assert "queued" in busy.json()["detail"]
    unknown = client.post(
        f"/v1/evaluations/{ev_id}/rescore", json={"evaluators": ["nope"]}, headers=auth
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"] == "UnknownEvaluator"
    assert "collapse" in unknown.json()["detail"]


def test_batch_rescore_runs_as_one_group_all_or_none_with_no_forward_pass(
    client: TestClient,
    auth: dict[str, str],
    get: Callable[[str], Any],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    submit_and_run: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    capitals_adapter: Path,
    pirate_adapter: Path,
) -> None:
    make_family()
    first = submit_and_run(capitals_adapter, lr=1e-2, name="first")
    ids = [first["evaluation_id"], first["baseline_evaluation_id"]]
    before = {i: _results(get, i) for i in ids}
    subset = ["collapse", "reference_match"]

    # all or none: one evaluation still queued refuses the request, nothing is requeued
    waiting = submit(pirate_adapter, lr=2e-2, name="waiting")["evaluation_id"]
    body = {"evaluation_ids": [*ids, waiting], "evaluators": subset}
    refused = client.post("/v1/evaluations/rescore", json=body, headers=auth)
    assert refused.status_code == 409, refused.text
    assert str(waiting) in refused.json()["detail"]
    for evaluation_id in ids:
        ev = get(f"/v1/evaluations/{evaluation_id}")
        assert ev["status"] == "succeeded"
        assert "relevance" in ev["provenance"]["evaluators"]
    assert client.post(f"/v1/evaluations/{waiting}/cancel", headers=auth).status_code == 200

    queued = client.post(
        "/v1/evaluations/rescore", json={"evaluation_ids": ids, "evaluators": subset}, headers=auth
    )
    assert queued.status_code == 200, queued.text
    assert [(e["id"], e["status"]) for e in queued.json()] == [(i, "queued") for i in ids]
    factory = worker.context.factory
    assert groups(factory, runnable_ids(factory), 8) == [sorted(ids)]  # one job
    with counting_forward_passes() as count:
        assert worker.run_pending() == 2
    assert count.passes == 0
    for evaluation_id in ids:
        ev = get(f"/v1/evaluations/{evaluation_id}")
        assert ev["status"] == "succeeded", ev["error"]
        assert set(ev["provenance"]["evaluators"]) == set(subset)
        after = _results(get, evaluation_id)
        assert after.keys() == before[evaluation_id].keys()
        for key, (output, scores) in after.items():
            old_output, old_scores = before[evaluation_id][key]
            assert output == old_output
            assert scores == {m: v for m, v in old_scores.items() if m in scores}
            assert "relevance" not in scores


def test_rescore_supersedes_the_decisions_it_touches_and_decides_again(
    client: TestClient,
    auth: dict[str, str],
    make_family: Callable[..., dict[str, Any]],
    submit_and_run: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    capitals_adapter: Path,
) -> None:
    make_family()
    first = submit_and_run(capitals_adapter, lr=1e-2, name="first")
    ev_id, baseline_id = first["evaluation_id"], first["baseline_evaluation_id"]
    old = client.get(f"/v1/decisions?evaluation_id={ev_id}", headers=auth)
    assert old.status_code == 200, old.text

    # re-scoring the baseline makes the candidate's decision stale at once ...
    queued = client.post(f"/v1/evaluations/{baseline_id}/rescore", headers=auth)
    assert queued.status_code == 200, queued.text
    stale = client.get(f"/v1/decisions?evaluation_id={ev_id}", headers=auth)
    assert stale.status_code == 409  # no current decision while its baseline is re-scored
    with worker.context.factory() as session:
        row = session.get_one(GateDecision, old.json()["id"])
        assert row.superseded_at is not None
    # ... and its success decides the pair again, from the new scores (the same here)
    assert worker.run_pending() == 1
    new = client.get(f"/v1/decisions?evaluation_id={ev_id}", headers=auth)
    assert new.status_code == 200, new.text
    assert new.json()["id"] != old.json()["id"]
    assert (new.json()["verdict"], new.json()["rules"]) == (
        old.json()["verdict"],
        old.json()["rules"],
    )
    assert new.json()["superseded_at"] is None
    kept = client.get(f"/v1/decisions/{old.json()['id']}", headers=auth)  # history stays
    assert kept.status_code == 200
    assert kept.json()["superseded_at"] is not None
