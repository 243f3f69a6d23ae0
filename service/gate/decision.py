"""The gate decision: a candidate evaluation against a baseline evaluation under a policy.

The decision fails when any rule's verdict is ``fail`` or ``inconclusive_fail``; how each
rule kind is judged is documented in :mod:`service.gate.policy`, the statistics in
:mod:`service.gate.stats`. Under ``family_wise: holm`` a rule's ``fail`` stands only when its
Holm-adjusted p-value is below alpha; otherwise it becomes inconclusive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from service.gate.policy import Policy
from service.gate.rules import RuleResult, RuleVerdict, evaluate_rule
from service.gate.scores import EvalScores, compare_metric
from service.gate.stats import holm

__all__ = ["Decision", "EvalScores", "RuleResult", "RuleVerdict", "compare_metric", "decide"]


@dataclass(frozen=True)
class Decision:
    """The gate's answer: ``pass`` only when no rule fails (inconclusive_fail counts)."""

    verdict: Literal["pass", "fail"]
    rules: list[RuleResult]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "verdict": self.verdict,
            "summary": self.summary,
            "rules": [rule.to_dict() for rule in self.rules],
        }


def _summary(results: Iterable[RuleResult]) -> tuple[Literal["pass", "fail"], str]:
    results = list(results)
    failed = [r for r in results if r.verdict in ("fail", "inconclusive_fail")]
    inconclusive = sum(r.verdict.startswith("inconclusive") for r in results)
    if failed:
        reasons = "; ".join(f"{r.rule_id}: {r.message}" for r in failed)
        return "fail", f"fail: {len(failed)} of {len(results)} rules failed — {reasons}"
    note = f" ({inconclusive} inconclusive, counted as pass)" if inconclusive else ""
    return "pass", f"pass: all {len(results)} rules passed{note}"


def family_wise(policy: Policy, results: list[RuleResult]) -> list[RuleResult]:
    """Holm's correction over the paired rules' fail p-values (see the module docstring)."""
    tested = [i for i, r in enumerate(results) if r.test is not None and r.p_value is not None]
    adjusted = holm([results[i].p_value or 0.0 for i in tested])
    out = list(results)
    for i, p_adjusted in zip(tested, adjusted, strict=True):
        rule = out[i]
        out[i] = replace(rule, p_adjusted=p_adjusted)
        if rule.verdict == "fail" and p_adjusted >= policy.alpha:
            fails = policy.inconclusive_outcome(policy.rules[i]) == "fail"
            out[i] = replace(
                out[i],
                verdict="inconclusive_fail" if fails else "inconclusive_pass",
                message=(
                    f"inconclusive after Holm's correction over {len(tested)} paired rules "
                    f"(adjusted p={p_adjusted:.3g} >= {policy.alpha:g}): {rule.message}"
                ),
            )
    return out


def decide(policy: Policy, candidate: EvalScores, baseline: EvalScores) -> Decision:
    """Evaluate every rule of ``policy`` on the candidate against the baseline.

    Raises :class:`~service.errors.ScoringError` on a NaN/infinite score, a metric without
    a recorded direction, or a non-positive baseline perplexity.
    """
    results = [evaluate_rule(policy, rule, candidate, baseline) for rule in policy.rules]
    if policy.family_wise == "holm":
        results = family_wise(policy, results)
    verdict, summary = _summary(results)
    return Decision(verdict=verdict, rules=results, summary=summary)
