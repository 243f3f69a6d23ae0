"""Promotion: an audited alias move, allowed only on a passing gate decision.

Promoting candidate C to alias A (default ``production``) of family F needs a
``pass`` decision of C's evaluation against the candidate A points to now (the
family's base model when A is not set yet), under F's *current* policy: a pass
under an older, looser policy is re-judged first, so tightening the policy also
closes the door on candidates already decided. An ``admin`` may override a missing or
failing decision with a written reason. Every move is recorded: who, when, from,
to, decision id, reason, whether it was an override.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service import webhooks
from service.alias_names import PRODUCTION
from service.aliases import get_alias
from service.auth import Principal
from service.db.base import utcnow
from service.db.models import Alias, Candidate, Evaluation, Family, GateDecision, Promotion
from service.decisions import decide_evaluation
from service.errors import (
    CandidateNotFound,
    GateNotPassed,
    InvalidRequest,
    PermissionDenied,
)
from service.families import base_candidate, current_policy, get_family
from service.queries import decisions as decision_queries


def current_target(session: Session, family: Family, alias: str) -> Candidate:
    """The candidate ``alias`` points to, or the family's base candidate when unset."""
    row = get_alias(session, family, alias)
    if row is not None:
        return session.get_one(Candidate, row.candidate_id)
    return base_candidate(session, family)


def current_decision(
    session: Session, family: Family, candidate_id: int, against_id: int
) -> GateDecision | None:
    """The candidate's decision against ``against_id`` under the family's current policy.

    When the newest decision was taken under an older policy version, the same pair of
    evaluations is judged again (and stored) under the current one. None when the
    candidate was never decided against ``against_id``.
    """
    decision = decision_queries.latest_decision_against(session, candidate_id, against_id)
    if decision is None or decision.policy_id == current_policy(session, family).id:
        return decision
    return decide_evaluation(session, session.get_one(Evaluation, decision.candidate_evaluation_id))


def promote(
    session: Session,
    *,
    family_name: str,
    candidate_id: int,
    principal: Principal,
    alias: str = PRODUCTION,
    reason: str | None = None,
    override: bool = False,
) -> Promotion:
    """Move ``alias`` to the candidate; raises GateNotPassed without a passing decision."""
    family = get_family(session, family_name)
    candidate = session.get(Candidate, candidate_id)
    if candidate is None or candidate.family_id != family.id:
        raise CandidateNotFound(f"candidate {candidate_id} is not in family {family_name!r}")
    current = current_target(session, family, alias)
    if current.id == candidate.id:
        raise InvalidRequest(f"alias {alias!r} already points to candidate {candidate.id}")
    decision = current_decision(session, family, candidate.id, current.id)
    passed = decision is not None and decision.verdict == "pass"
    if not passed:
        why = (
            f"no gate decision of candidate {candidate.id} against the current {alias!r} "
            f"(candidate {current.id}); evaluate it first"
            if decision is None
            else f"gate decision {decision.id} against candidate {current.id} is "
            f"{decision.verdict!r}: {decision.summary}"
        )
        if not override:
            raise GateNotPassed(f"promotion refused: {why}")
        if not principal.allows("admin"):
            raise PermissionDenied("overriding the gate needs an admin token")
        if not (reason and reason.strip()):
            raise InvalidRequest("overriding the gate needs a written reason")
    row = get_alias(session, family, alias)
    previous = row.candidate_id if row is not None else None
    if row is None:
        session.add(Alias(family_id=family.id, name=alias, candidate_id=candidate.id))
    else:
        row.candidate_id = candidate.id
        row.updated_at = utcnow()
    record = Promotion(
        family_id=family.id,
        alias=alias,
        from_candidate_id=previous,
        to_candidate_id=candidate.id,
        decision_id=decision.id if decision is not None else None,
        actor=f"{principal.name} (token {principal.token_id})",
        override=not passed,
        reason=reason,
    )
    session.add(record)
    session.flush()
    webhooks.emit(
        session,
        family.id,
        webhooks.PROMOTION,
        {
            "promotion_id": record.id,
            "alias": alias,
            "from_candidate_id": previous,
            "to_candidate_id": candidate.id,
            "decision_id": record.decision_id,
            "actor": record.actor,
            "override": record.override,
            "reason": reason,
        },
    )
    return record
