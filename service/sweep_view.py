"""The learning-rate sweep view: every candidate of a sweep with its lift, forgetting,
collapse signals, verdict, label and training-log diagnosis, plus the recommended rate.

The numbers are recomputed from the stored per-example scores (paired, same
statistics settings as the gate), so the view always agrees with the decisions.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Candidate, Evaluation, GateDecision, GatePolicy
from service.families import get_family, policy_of
from service.gate import service as gate
from service.gate.decision import Decision, RuleResult, compare_metric
from service.gate.policy import MinImprovement, OutOfDomainDelta, Policy
from service.sweeps import SweepRow, recommend, sweep_row

DEFAULT_LIFT_METRIC = "token_f1"
DEFAULT_OOD_METRIC = "relevance_reference"


def lift_metric_of(policy: Policy) -> str:
    """The in-domain target metric: the policy's first min_improvement rule, else token F1."""
    for rule in policy.rules:
        if isinstance(rule, MinImprovement):
            return rule.metric
    return DEFAULT_LIFT_METRIC


def ood_metric_of(policy: Policy) -> str:
    for rule in policy.rules:
        if isinstance(rule, OutOfDomainDelta):
            return rule.metric
    return DEFAULT_OOD_METRIC


def _decision(row: GateDecision) -> Decision:
    return Decision(
        verdict="pass" if row.verdict == "pass" else "fail",
        rules=[RuleResult(**r) for r in row.rules],
        summary=row.summary,
    )


def _latest_evaluation(session: Session, candidate_id: int) -> Evaluation | None:
    return session.scalars(
        select(Evaluation)
        .where(Evaluation.candidate_id == candidate_id)
        .order_by(Evaluation.id.desc())
        .limit(1)
    ).first()


def list_sweeps(session: Session, family_name: str) -> list[dict[str, Any]]:
    family = get_family(session, family_name)
    rows: dict[str, list[float]] = {}
    for sweep, lr in session.execute(
        select(Candidate.sweep, Candidate.learning_rate).where(
            Candidate.family_id == family.id, Candidate.sweep.is_not(None)
        )
    ):
        if sweep is not None and lr is not None:
            rows.setdefault(sweep, []).append(lr)
    return [
        {"sweep": s, "n_candidates": len(lrs), "learning_rates": sorted(lrs)}
        for s, lrs in sorted(rows.items())
    ]


def sweep_view(
    session: Session, family_name: str, sweep: str, *, lift_metric: str | None = None
) -> dict[str, Any]:
    family = get_family(session, family_name)
    candidates = session.scalars(
        select(Candidate)
        .where(Candidate.family_id == family.id, Candidate.sweep == sweep)
        .order_by(Candidate.learning_rate, Candidate.id)
    ).all()
    out_rows: list[dict[str, Any]] = []
    scored: list[SweepRow] = []
    for candidate in candidates:
        evaluation = _latest_evaluation(session, candidate.id)
        base: dict[str, Any] = {
            "candidate_id": candidate.id,
            "learning_rate": candidate.learning_rate,
            "evaluation_id": evaluation.id if evaluation else None,
            "status": evaluation.status if evaluation else "not evaluated",
            "progress": (
                {"done": evaluation.progress_done, "total": evaluation.progress_total}
                if evaluation
                else None
            ),
            "diagnosis": candidate.diagnosis,
            "training_log": candidate.training_log or [],
            "decision_id": None,
            "verdict": None,
            "label": None,
        }
        decision_row = gate.latest_decision(session, evaluation.id) if evaluation else None
        if evaluation is not None and decision_row is not None:
            policy = policy_of(session.get_one(GatePolicy, decision_row.policy_id))
            metric = lift_metric or lift_metric_of(policy)
            cand_scores = gate.load_scores(session, evaluation)
            base_scores = gate.load_scores(
                session, session.get_one(Evaluation, decision_row.baseline_evaluation_id)
            )
            decision = _decision(decision_row)
            lift = compare_metric(cand_scores, base_scores, metric, policy, domain="in")
            ood = compare_metric(
                cand_scores, base_scores, ood_metric_of(policy), policy, domain="out"
            )
            halluc = compare_metric(cand_scores, base_scores, "hallucination", policy, domain="all")
            diagnosis = (candidate.diagnosis or {}).get("label")
            row = sweep_row(
                str(candidate.id),
                candidate.learning_rate,
                decision,
                lift=lift if lift.n else None,
                ood=ood if ood.n else None,
                hallucination=halluc if halluc.n else None,
                training_diagnosis=diagnosis,
            )
            scored.append(row)
            base.update(asdict(row))
            base.update(
                candidate_id=candidate.id,
                decision_id=decision_row.id,
                lift_metric=metric,
                lift_significant=lift.significant_improvement,
            )
        out_rows.append(base)
    rate, reason = (
        recommend(scored)
        if scored
        else (None, "no candidate of this sweep has a gate decision yet")
    )
    return {
        "family": family.name,
        "sweep": sweep,
        "rows": out_rows,
        "recommended_rate": rate,
        "recommendation_reason": reason,
    }
