"""Gate decisions through the API on real tiny models: noise control, failing rules, diffs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from service.db.base import Base
from service.db.models import GateDecision
from service.db.session import unit_of_work
from tests.decisions.conftest import COMPARATIVE_POLICY, COMPARATIVE_RULES, NO_MORE_REPETITION

COMPARATIVE_KINDS = {"no_regression", "out_of_domain_delta", "perplexity_ratio", "min_improvement"}
FAILING = ("fail", "inconclusive_fail")
COMPARATIVE_IDS = [
    "no_regression:relevance:in",
    "no_regression:relevance:out",
    "no_regression:hallucination:in",
    "no_regression:hallucination:out",
    "out_of_domain_delta:relevance_reference:out",
    "perplexity_ratio:perplexity_word",
]


def _decision_of(get: Callable[[str], Any], evaluation_id: int) -> dict[str, Any]:
    evaluation = get(f"/v1/evaluations/{evaluation_id}")
    assert evaluation["status"] == "succeeded", evaluation["error"]
    assert evaluation["gate_decision_id"] is not None, "the job did not decide after success"
    decision: dict[str, Any] = get(f"/v1/decisions/{evaluation['gate_decision_id']}")
    assert get(f"/v1/decisions?evaluation_id={evaluation_id}")["id"] == decision["id"]
    assert datetime.fromisoformat(decision["created_at"]).utcoffset() == timedelta(0)
    return decision


def _failing(decision: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["rule_id"]: r for r in decision["rules"] if r["verdict"] in FAILING}


def test_base_model_as_its_own_candidate_passes_with_zero_effects(
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    run_worker: Callable[[], int],
    get: Callable[[str], Any],
    tiny_base: Path,
    capitals_adapter: Path,
) -> None:
    make_family("noise", policy=COMPARATIVE_POLICY)
    make_family("shipped")  # the default policy
    same = submit(tiny_base, family="noise", kind="full", name="base-again")
    same_default = submit(tiny_base, family="shipped", kind="full", name="base-again")
    first = submit(capitals_adapter, family="shipped", lr=1e-2, name="first")
    again = submit(capitals_adapter, family="shipped", lr=1e-2, name="again")
    # base + full for "noise"; the same two for "shipped" and the second adapter come from the
    # cache: 3 model runs, 6 evaluations
    assert run_worker() == 6

    decision = _decision_of(get, same["evaluation_id"])
    assert decision["verdict"] == "pass", decision["summary"]
    assert decision["baseline_evaluation_id"] == same["baseline_evaluation_id"]
    assert [r["rule_id"] for r in decision["rules"]] == COMPARATIVE_IDS
    for rule in decision["rules"]:
        assert rule["verdict"] == "pass", rule
        assert rule["effect"] == 0.0, rule
        assert rule["candidate_value"] == rule["baseline_value"], rule
        if rule["kind"] == "perplexity_ratio":
            assert rule["ratio"] == 1.0
        else:
            assert rule["n"] > 0
            assert (rule["ci_low"], rule["ci_high"]) == (0.0, 0.0), rule

    # Under the shipped policy the same model fails no regression rule: only its lift bar
    # (nothing was learned) and absolute thresholds that the baseline itself violates (the
    # random tiny Llama answers with empty strings). The dataset has no accepted answers,
    # choices, gold continuations or safety probes, so those rules are skipped.
    shipped = _decision_of(get, same_default["evaluation_id"])
    without_evidence = {
        "out_of_domain_delta:answer_match:out",
        "out_of_domain_delta:choice_acc:out",
        "out_of_domain_delta:target_nll:out",
        "no_regression:refusal_rate:all",
        "no_regression:over_refusal:all",
    }
    for rule in shipped["rules"]:
        if rule["rule_id"] in without_evidence:
            assert rule["verdict"] == "skipped", rule
        elif rule["kind"] in COMPARATIVE_KINDS - {"min_improvement"}:
            assert (rule["verdict"], rule["effect"]) == ("pass", 0.0), rule
    failing = _failing(shipped)
    lift = failing.pop("min_improvement:token_f1:in")
    assert (lift["verdict"], lift["effect"]) == ("fail", 0.0)
    assert failing, "expected the empty-output threshold to fail on the random tiny model"
    for rule in failing.values():
        assert rule["kind"] == "threshold"
        assert rule["baseline_value"] == rule["candidate_value"]

    reused = get(f"/v1/evaluations/{again['evaluation_id']}")
    assert reused["reused_from_id"] == first["evaluation_id"]
    one, two = _decision_of(get, first["evaluation_id"]), _decision_of(get, again["evaluation_id"])
    assert one["id"] != two["id"]
    assert two["verdict"] == one["verdict"]
    assert two["rules"] == one["rules"]
    assert set(_failing(two)) <= set(_failing(one))


def test_failing_rule_is_named_with_its_evidence_and_its_examples_diff(
    client: TestClient,
    auth: dict[str, str],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    run_worker: Callable[[], int],
    get: Callable[[str], Any],
    pirate_adapter: Path,
) -> None:
    policy = {"rules": [*COMPARATIVE_RULES, NO_MORE_REPETITION]}
    setup = make_family("strict", policy=policy)
    pirate = submit(pirate_adapter, family="strict", lr=1e-2)
    assert run_worker() == 2
    decision = _decision_of(get, pirate["evaluation_id"])

    assert decision["verdict"] == "fail"
    assert decision["policy_version"] == 1
    failing = _failing(decision)
    rule = failing["no_regression:repetition:all"]
    assert rule["verdict"] == "fail"  # significant, not merely inconclusive
    assert rule["candidate_value"] > rule["baseline_value"]  # it really loops
    assert rule["effect"] < -rule["tolerance"]  # oriented: lower repetition is better
    assert rule["ci_low"] <= rule["effect"] <= rule["ci_high"] < 0
    assert 0.0 <= rule["p_value"] < 0.05
    assert rule["n"] == setup["dataset"]["n_examples"]
    assert "no_regression:repetition:all" in decision["summary"]
    results = get(f"/v1/evaluations/{pirate['evaluation_id']}/results?limit=100")
    outputs = {row["example_key"]: row["output"] for row in results["items"]}
    assert all(output.strip() for output in outputs.values())

    _check_diffs(client, auth, get, decision["id"], setup["dataset"]["n_examples"], outputs)


def _check_diffs(
    client: TestClient,
    auth: dict[str, str],
    get: Callable[[str], Any],
    decision_id: int,
    n_examples: int,
    outputs: dict[str, str],
) -> None:
    url = f"/v1/decisions/{decision_id}/diff"
    every = get(f"{url}?limit=500")
    assert every["decision_id"] == decision_id
    assert every["total"] == len(every["items"]) > n_examples  # several metrics per example
    keys = [(i["delta"], i["metric"], i["example_id"]) for i in every["items"]]
    assert keys == sorted(keys)  # most regressed first
    assert every["items"][0]["delta"] < 0

    pages = [get(f"{url}?offset={offset}&limit=7") for offset in range(0, every["total"], 7)]
    assert all(p["total"] == every["total"] and p["limit"] == 7 for p in pages)
    assert [i for p in pages for i in p["items"]] == every["items"]
    assert get(f"{url}?offset={every['total']}")["items"] == []

    relevance = get(f"{url}?metric=relevance")
    assert relevance["total"] == n_examples
    assert {i["metric"] for i in relevance["items"]} == {"relevance"}
    for item in relevance["items"]:
        assert item["delta"] == item["candidate_score"] - item["baseline_score"]
        assert item["candidate_output"] == outputs[item["example_id"]]
    repetition = get(f"{url}?metric=repetition")["items"]
    assert repetition
    assert all(i["delta"] == -(i["candidate_score"] - i["baseline_score"]) < 0 for i in repetition)

    out = get(f"{url}?metric=relevance&domain=out")
    assert out["total"] == 4
    assert {i["domain"] for i in out["items"]} == {"out"}
    capitals = get(f"{url}?cohort=capitals&limit=500")
    assert {i["cohort"] for i in capitals["items"]} == {"capitals"}
    assert {i["example_id"] for i in capitals["items"]} == {"q0", "q1", "q2", "q3"}
    assert capitals["total"] == sum(i["cohort"] == "capitals" for i in every["items"])
    assert get(f"{url}?metric=no-such-metric")["total"] == 0

    for bad in ("domain=sideways", "limit=0", "offset=-1"):
        response = client.get(f"{url}?{bad}", headers=auth)
        assert response.status_code == 422, bad
        assert response.json()["error"] == "ValidationError"
    _check_slices(client, auth, get, decision_id, every["items"])


def _check_slices(
    client: TestClient,
    auth: dict[str, str],
    get: Callable[[str], Any],
    decision_id: int,
    diffs: list[dict[str, Any]],
) -> None:
    """The slice summary agrees with the diffs it summarises, worst cohort first."""
    url = f"/v1/decisions/{decision_id}/slices"
    default = get(url)
    rules = get(f"/v1/decisions/{decision_id}")["rules"]
    failing = ("fail", "inconclusive_fail")
    paired = ("min_improvement", "no_regression", "out_of_domain_delta")
    first_failed = next(r for r in rules if r["kind"] in paired and r["verdict"] in failing)
    assert default["metric"] == first_failed["metric"]  # a failed rule's metric comes first
    summary = get(f"{url}?metric=relevance")
    assert summary["confidence"] == pytest.approx(0.9)
    slices = summary["slices"]
    assert {s["cohort"] for s in slices} == {"capitals", "general", "json"}
    means = [s["mean_change"] for s in slices]
    assert means == sorted(means)  # worst cohort first
    for s in slices:
        deltas = [
            d["delta"] for d in diffs if d["metric"] == "relevance" and d["cohort"] == s["cohort"]
        ]
        assert s["n"] == len(deltas)
        assert s["mean_change"] == pytest.approx(sum(deltas) / len(deltas))
        assert s["n_regressed"] == sum(d < 0 for d in deltas)
        if s["n"] > 1 and s["ci_low"] is not None:
            assert s["ci_low"] <= s["mean_change"] <= s["ci_high"]
    out = get(f"{url}?metric=relevance&domain=out")["slices"]
    assert [s["cohort"] for s in out] == ["general"]
    missing = client.get(f"{url}?metric=no-such-metric", headers=auth)
    assert missing.status_code == 422, missing.text
    assert "no-such-metric" in missing.json()["detail"]


def test_unknown_decision_and_evaluation_are_json_404s(
    client: TestClient, auth: dict[str, str], token_for: Callable[[str], str]
) -> None:
    for path, error in (
        ("/v1/decisions/9999", "DecisionNotFound"),
        ("/v1/decisions/9999/diff", "DecisionNotFound"),
        ("/v1/decisions?evaluation_id=9999", "EvaluationNotFound"),
    ):
        response = client.get(path, headers=auth)
        assert response.status_code == 404, path
        body = response.json()
        assert body["error"] == error
        assert "9999" in body["detail"]
    assert client.get("/v1/decisions/1").status_code == 401
    read = {"Authorization": f"Bearer {token_for('read')}"}
    assert client.get("/v1/decisions/9999", headers=read).status_code == 404


def test_reading_a_decision_never_computes_one_a_post_does(
    client: TestClient,
    auth: dict[str, str],
    token_for: Callable[[str], str],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    run_worker: Callable[[], int],
    tiny_base: Path,
) -> None:
    make_family("noise", policy=COMPARATIVE_POLICY)
    same = submit(tiny_base, family="noise", kind="full", name="base-again")
    url = f"/v1/decisions?evaluation_id={same['evaluation_id']}"
    early = client.get(url, headers=auth)  # queued: nothing to read, nothing computed
    assert (early.status_code, early.json()["error"]) == (409, "EvaluationNotFinished")
    assert run_worker() == 2
    stored = client.get(url, headers=auth).json()  # computed when the evaluation finished
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        session.execute(delete(GateDecision))

    for _ in range(2):
        missing = client.get(url, headers=auth)
        assert (missing.status_code, missing.json()["error"]) == (404, "DecisionNotFound")
        assert "POST /v1/decisions" in missing.json()["detail"]
    read = {"Authorization": f"Bearer {token_for('read')}"}
    assert client.post(url, headers=read).status_code == 403
    computed = client.post(url, headers=auth)
    assert computed.status_code == 200, computed.text
    assert computed.json()["verdict"] == stored["verdict"] == "pass"
    assert computed.json()["rules"] == stored["rules"]
    assert client.get(url, headers=auth).json()["id"] == computed.json()["id"]
    assert client.post(url, headers=auth).json()["id"] == computed.json()["id"]  # stored once


def test_no_get_route_writes(
    client: TestClient,
    auth: dict[str, str],
    make_family: Callable[..., dict[str, Any]],
    submit: Callable[..., dict[str, Any]],
    run_worker: Callable[[], int],
    tiny_base: Path,
) -> None:
    """Every GET of the API, on a family with a decided candidate and on one whose decision
    is missing: no table gains or loses a row (a read never computes and stores)."""
    make_family("noise", policy=COMPARATIVE_POLICY)
    same = submit(tiny_base, family="noise", kind="full", name="base-again", sweep="s1")
    assert run_worker() == 2
    sessionmaker = client.app.state.sessionmaker  # type: ignore[attr-defined]
    with unit_of_work(sessionmaker) as session:
        decision_id = session.scalars(select(GateDecision.id)).one()
    ids = {
        "name": "noise",
        "family": "noise",
        "sweep": "s1",
        "version": "1",
        "candidate_id": str(same["id"]),
        "evaluation_id": str(same["evaluation_id"]),
        "decision_id": str(decision_id),
        "webhook_id": "1",
    }
    paths = [
        path.format(**ids)
        for path, operations in client.get("/openapi.json").json()["paths"].items()
        if "get" in operations
    ]
    assert len(paths) > 20
    of_evaluation = f"/v1/decisions?evaluation_id={same['evaluation_id']}"
    paths.append(of_evaluation)

    def counts() -> dict[str, int]:
        with unit_of_work(sessionmaker) as session:
            return {
                table.name: session.scalar(select(func.count()).select_from(table)) or 0
                for table in Base.metadata.sorted_tables
            }

    for stored in (True, False):
        if not stored:  # the decision goes: a GET must not bring it back
            with unit_of_work(sessionmaker) as session:
                session.execute(delete(GateDecision))
        before = counts()
        answered = {path: client.get(path, headers=auth).status_code for path in paths}
        assert counts() == before, answered
        assert answered[f"/v1/evaluations/{same['evaluation_id']}"] == 200
        assert answered[of_evaluation] == (200 if stored else 404)
