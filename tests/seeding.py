"""Seed large sweeps straight into the database, for the dashboard's first-paint
measurement and the endpoint benchmark (``benchmarks/dashboard_endpoints.py``).

Generating 10 candidates × 1,000 examples with a model would take an hour on this
machine, so the rows a finished evaluation leaves behind are written directly: examples,
outputs, per-example scores, the model-level perplexity aggregate. The gate decisions
are then computed by the real gate (:func:`service.decisions.decide_evaluation`) from
those rows, so every number the dashboard shows comes from the same code as in
production. Scores are drawn from a fixed seed: a higher learning rate lifts the
in-domain metric more and, past the middle of the sweep, costs out-of-domain relevance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import insert
from sqlalchemy.orm import Session

from service import decisions
from service.db.models import (
    Aggregate,
    Candidate,
    Dataset,
    DatasetExample,
    DatasetVersion,
    Evaluation,
    ExampleResult,
    Family,
    GatePolicy,
    Score,
)
from service.gate.policy import DEFAULT_POLICY, MinImprovement, Policy, policy_json
from service.lifecycle import SUCCEEDED

COHORTS = ("billing", "shipping", "account", "returns", "general")
SEEDED_POLICY = (
    DEFAULT_POLICY
    if any(isinstance(rule, MinImprovement) for rule in DEFAULT_POLICY.rules)
    else Policy(
        rules=[MinImprovement(metric="token_f1", domain="in", delta=0.02), *DEFAULT_POLICY.rules]
    )
)
"""The shipped policy, with an in-domain lift rule if it has none."""
CHUNK = 20_000


@dataclass
class Seeded:
    family: str
    sweeps: list[str]
    baseline_evaluation_id: int
    candidate_ids: dict[str, list[int]] = field(default_factory=dict)
    decision_ids: list[int] = field(default_factory=list)
    n_scores: int = 0


def _insert(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(table), rows[start : start + CHUNK])


def _examples(n: int) -> list[dict[str, Any]]:
    return [
        {
            "position": i,
            "example_key": f"ex-{i:05d}",
            "input": f"Ticket {i}: where is my order number {1000 + i}?",
            "reference": f"Queue: {COHORTS[i % len(COHORTS)]}",
            "context": f"Order {1000 + i} shipped on day {i % 28 + 1}.",
            "domain": "in" if i % 2 == 0 else "out",
            "cohort": COHORTS[i % len(COHORTS)],
        }
        for i in range(n)
    ]


def _scores(
    rng: np.random.Generator, examples: list[dict[str, Any]], strength: float | None
) -> dict[str, dict[str, float]]:
    """metric → example_key → value; ``strength`` None = the baseline, else 0..1 (lr rank)."""
    n = len(examples)
    is_in = np.array([e["domain"] == "in" for e in examples])
    base_rng = np.random.default_rng(7)  # the baseline's values, shared by every candidate
    f1 = base_rng.uniform(0.0, 0.3, n)
    ref = base_rng.uniform(0.6, 0.9, n)
    rel = base_rng.uniform(0.5, 0.9, n)
    hall = (base_rng.uniform(size=n) < 0.1).astype(float)
    rep = base_rng.uniform(0.0, 0.1, n)
    right = (base_rng.uniform(size=n) < 0.9).astype(float)
    if strength is not None:
        lost = rng.uniform(size=n) < 0.6 * max(0.0, strength - 0.55)
        right = np.where(lost, 0.0, right)
        f1 = np.clip(f1 + 0.35 * strength + rng.normal(0, 0.05, n), 0, 1)
        ref = np.clip(ref - 0.25 * max(0.0, strength - 0.55) + rng.normal(0, 0.03, n), 0, 1)
        rel = np.clip(rel + rng.normal(0, 0.02, n), 0, 1)
        hall = (rng.uniform(size=n) < 0.1 + 0.08 * strength).astype(float)
        rep = np.clip(rep + rng.normal(0, 0.01, n), 0, 1)
    keys = [e["example_key"] for e in examples]
    out: dict[str, dict[str, float]] = {
        "relevance": dict(zip(keys, rel.tolist(), strict=True)),
        "hallucination": dict(zip(keys, hall.tolist(), strict=True)),
        "repetition": dict(zip(keys, rep.tolist(), strict=True)),
        "empty_output": dict.fromkeys(keys, 0.0),
        "token_f1": {k: float(v) for k, v, i in zip(keys, f1, is_in, strict=True) if i},
        "answer_match": {k: float(v) for k, v, i in zip(keys, right, is_in, strict=True) if not i},
        "relevance_reference": {
            k: float(v) for k, v, i in zip(keys, ref, is_in, strict=True) if not i
        },
    }
    return out


def _evaluation(
    session: Session, candidate: Candidate, version: DatasetVersion, baseline_id: int | None
) -> Evaluation:
    evaluation = Evaluation(
        candidate_id=candidate.id,
        dataset_version_id=version.id,
        baseline_evaluation_id=baseline_id,
        status=SUCCEEDED,
        progress_done=version.n_examples,
        progress_total=version.n_examples,
    )
    session.add(evaluation)
    session.flush()
    return evaluation


def _fill(
    session: Session,
    evaluation: Evaluation,
    examples: list[dict[str, Any]],
    scores: dict[str, dict[str, float]],
    perplexity: float,
    label: str,
) -> int:
    _insert(
        session,
        ExampleResult,
        [
            {
                "evaluation_id": evaluation.id,
                "example_key": e["example_key"],
                "output": f"{label} answer to {e['example_key']}: Queue: {e['cohort']}",
                "n_prompt_tokens": 12,
                "n_new_tokens": 8,
            }
            for e in examples
        ],
    )
    rows = [
        {
            "evaluation_id": evaluation.id,
            "example_key": key,
            "metric": metric,
            "value": value,
            "evaluator": metric,
            "evaluator_version": "1",
        }
        for metric, values in scores.items()
        for key, value in values.items()
    ]
    _insert(session, Score, rows)
    session.add(
        Aggregate(
            evaluation_id=evaluation.id,
            metric="perplexity_word",
            scope="model",
            scope_value="",
            n=1,
            mean=perplexity,
        )
    )
    return len(rows)


def seed_sweeps(
    session: Session,
    *,
    family: str = "seeded",
    n_sweeps: int = 1,
    n_candidates: int = 10,
    n_examples: int = 1000,
    decide: bool = True,
) -> Seeded:
    """A family with ``n_sweeps`` sweeps of ``n_candidates`` evaluated candidates each
    (learning rates 1e-5 … 1e-2, log-spaced), all compared with one baseline evaluation of
    the base model on one dataset version of ``n_examples`` examples. Only flushes."""
    examples = _examples(n_examples)
    dataset = Dataset(name=f"{family}-data")
    session.add(dataset)
    session.flush()
    version = DatasetVersion(
        dataset_id=dataset.id,
        version=1,
        digest=f"{family:0<64}"[:64],
        n_examples=n_examples,
        n_in_domain=sum(e["domain"] == "in" for e in examples),
        n_out_domain=sum(e["domain"] == "out" for e in examples),
        n_heldout=0,
    )
    session.add(version)
    session.flush()
    _insert(session, DatasetExample, [{**e, "dataset_version_id": version.id} for e in examples])
    fam = Family(name=family, base_model="seeded-base")
    session.add(fam)
    session.flush()
    session.add(
        GatePolicy(family_id=fam.id, version=1, body=json.loads(policy_json(SEEDED_POLICY)))
    )
    base = Candidate(family_id=fam.id, kind="base", base_model="seeded-base", name="base")
    session.add(base)
    session.flush()
    baseline = _evaluation(session, base, version, None)
    rng = np.random.default_rng(0)
    seeded = Seeded(family, [], baseline.id)
    seeded.n_scores += _fill(
        session, baseline, examples, _scores(rng, examples, None), 20.0, "base"
    )
    rates = np.logspace(-5, -2, n_candidates)
    evaluations = []
    for s in range(n_sweeps):
        sweep = f"w{s + 1:02d}"
        seeded.sweeps.append(sweep)
        seeded.candidate_ids[sweep] = []
        for i, lr in enumerate(rates):
            strength = i / max(1, n_candidates - 1)
            candidate = Candidate(
                family_id=fam.id,
                kind="lora",
                base_model="seeded-base",
                learning_rate=float(lr),
                sweep=sweep,
                tags={"run": f"{sweep}-{i}"},
                training_log=[
                    {"step": step, "loss": float(3.0 * np.exp(-step * lr * 300) + 0.1)}
                    for step in range(1, 41)
                ],
            )
            session.add(candidate)
            session.flush()
            seeded.candidate_ids[sweep].append(candidate.id)
            evaluation = _evaluation(session, candidate, version, baseline.id)
            scores = _scores(rng, examples, strength)
            ppl = 20.0 * (1.0 + 0.25 * strength**2)
            seeded.n_scores += _fill(session, evaluation, examples, scores, ppl, f"lr {lr:.1e}")
            evaluations.append(evaluation)
    session.flush()
    if decide:
        seeded.decision_ids = [decisions.decide_evaluation(session, ev).id for ev in evaluations]
    return seeded
