"""The gate decision: a candidate evaluation against a baseline evaluation under a policy.

The decision fails when any rule's verdict is ``fail`` or ``inconclusive_fail``; how each
rule kind is judged is documented in :mod:`service.gate.policy`, the statistics in
:mod:`service.gate.stats`. Under ``family_wise: holm`` a rule's ``fail`` stands only when its
Holm-adjusted p-value (:mod:`service.gate.multiple_testing`) is below alpha; otherwise it
becomes inconclusive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from service.gate.multiple_testing import holm
from service.gate.policy import Policy
from service.gate.rules import RuleResult, RuleVerdict, evaluate_rule
from service.gate.scores import EvalScores, compare_metric

__all__ = ["Decision", "EvalScores", "RuleResult", "RuleVerdict", "compare_metric", "decide"]


@dataclass(frozen=True)
class Decision:
    """The gate's answer: ``pass`` only when no rule fails (inconclusive_fail counts)."""

    verdict: Literal["pass", "fail"]
    rules: list[RuleResult]
    summary: str

    @property
    def warnings(self) -> list[str]:
        """What the verdicts cannot show (e.g. selection bias), one sentence each."""
        return [rule.warning for rule in self.rules if rule.warning]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "verdict": self.verdict,
            "summary": self.summary,
            "warnings": self.warnings,
            "rules": [rule.to_dict() for rule in self.rules],
        }


def _summary(results: Iterable[RuleResult]) -> tuple[Literal["pass", "fail"], str]:
    results = list(results)
    judged = [r for r in results if r.verdict != "skipped"]
    failed = [r for r in judged if r.verdict in ("fail", "inconclusive_fail")]
    inconclusive = sum(r.verdict.startswith("inconclusive") for r in judged)
    skipped = len(results) - len(judged)
    warnings = "".join(f" Warning: {r.warning}" for r in results if r.warning)
    if failed:
        reasons = "; ".join(f"{r.rule_id}: {r.message}" for r in failed)
        return "fail", f"fail: {len(failed)} of {len(judged)} rules failed — {reasons}{warnings}"
    notes = [f"{inconclusive} inconclusive, counted as pass"] if inconclusive else []
    notes += [f"{skipped} skipped"] if skipped else []
    note = f" ({'; '.join(notes)})" if notes else ""
    return "pass", f"pass: all {len(judged)} rules passed{note}{warnings}"


SELECTION_BIAS_SHARE = 0.05
"""An out-of-domain correctness rule whose baseline gets fewer than this share of its
examples wrong gets a selection-bias warning."""


def selection_bias(results: list[RuleResult], candidate: EvalScores) -> list[RuleResult]:
    """Warn on out-of-domain correctness rules whose examples the baseline (almost) always
    answers right: such a set, a natural one to build ("keep what the base knows"), can only
    show losses - any change of the answers looks like forgetting there, while the gains a
    changed model makes on questions the base got wrong stay out of sight."""
    out = list(results)
    for i, rule in enumerate(results):
        correctness = rule.losses is not None and candidate.higher_is_better.get(rule.metric)
        if not (correctness and rule.domain == "out" and rule.verdict != "skipped"):
            continue
        if rule.baseline_value is None or not rule.n:
            continue
        wrong = round(rule.n * (1.0 - rule.baseline_value))
        if wrong < SELECTION_BIAS_SHARE * rule.n:
            out[i] = replace(
                rule,
                warning=(
                    f"selection bias in {rule.rule_id}: the baseline gets only {wrong} of "
                    f"{rule.n} out-of-domain examples wrong, so the set can show losses but "
                    "(almost) no gains; add questions the baseline gets wrong to tell change "
                    "from forgetting"
                ),
            )
    return out


def family_wise(policy: Policy, results: list[RuleResult]) -> list[RuleResult]:
    """Holm's correction over the paired rules' fail p-values (see the module docstring)."""
    tested = [
        i
        for i, r in enumerate(results)
        if r.test is not None and r.p_value is not None and r.verdict != "skipped"
    ]
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
    results = selection_bias(results, candidate)
    verdict, summary = _summary(results)
    return Decision(verdict=verdict, rules=results, summary=summary)
