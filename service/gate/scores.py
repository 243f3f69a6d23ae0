"""The scores an evaluation hands the gate, and how rules select and pair them.

Comparative rules pair examples by id: only ids present in both evaluations, carrying the
metric in both, and falling in the rule's scope (domain and cohort, as labelled in *both*
evaluations) are used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.errors import ScoringError
from service.gate.policy import Policy
from service.gate.stats import PairedResult, improvement_comparison, paired_comparison


@dataclass(frozen=True)
class EvalScores:
    """One finished evaluation's scores, as the gate sees them."""

    domains: Mapping[str, str]
    """example_id -> "in" | "out"."""
    cohorts: Mapping[str, str | None]
    """example_id -> cohort."""
    per_example: Mapping[str, Mapping[str, float]]
    """example_id -> metric -> value; a missing metric means "not applicable"."""
    model_metrics: Mapping[str, float]
    """Per-model metrics, e.g. "perplexity_token", "perplexity_word"."""
    higher_is_better: Mapping[str, bool]
    """metric -> direction."""
    binary_metrics: frozenset[str] = frozenset()
    """Metrics whose scores are 0 or 1 (judged with the exact paired tests)."""


def scope_text(domain: str, cohort: str | None) -> str:
    return f"domain={domain}" + (f", cohort={cohort}" if cohort else "")


def _in_scope(scores: EvalScores, example_id: str, domain: str, cohort: str | None) -> bool:
    if domain != "all" and scores.domains.get(example_id) != domain:
        return False
    return cohort is None or scores.cohorts.get(example_id) == cohort


def _value(scores: EvalScores, example_id: str, metric: str) -> float | None:
    value = scores.per_example.get(example_id, {}).get(metric)
    if value is None:
        return None
    if not math.isfinite(value):
        raise ScoringError(f"metric {metric!r} of example {example_id!r} is {value}")
    return float(value)


def scoped_values(
    scores: EvalScores, metric: str, domain: str = "all", cohort: str | None = None
) -> NDArray[np.float64]:
    """One evaluation's values of ``metric`` in scope, ordered by example id."""
    values = [
        _value(scores, example_id, metric)
        for example_id in sorted(scores.per_example)
        if _in_scope(scores, example_id, domain, cohort)
    ]
    return np.array([v for v in values if v is not None], dtype=np.float64)


def paired_values(
    candidate: EvalScores,
    baseline: EvalScores,
    metric: str,
    domain: str = "all",
    cohort: str | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Candidate and baseline values of ``metric`` on the shared in-scope examples."""
    cand: list[float] = []
    base: list[float] = []
    for example_id in sorted(set(candidate.per_example) & set(baseline.per_example)):
        if not (
            _in_scope(candidate, example_id, domain, cohort)
            and _in_scope(baseline, example_id, domain, cohort)
        ):
            continue
        c, b = _value(candidate, example_id, metric), _value(baseline, example_id, metric)
        if c is not None and b is not None:
            cand.append(c)
            base.append(b)
    return np.array(cand, dtype=np.float64), np.array(base, dtype=np.float64)


def higher_is_better(metric: str, *evaluations: EvalScores) -> bool:
    """The metric's direction as recorded by the evaluations; ScoringError if unknown."""
    for scores in evaluations:
        if metric in scores.higher_is_better:
            return bool(scores.higher_is_better[metric])
    raise ScoringError(f"no direction (higher_is_better) recorded for metric {metric!r}")


def compare_metric(
    candidate: EvalScores,
    baseline: EvalScores,
    metric: str,
    policy: Policy,
    *,
    domain: str = "in",
    cohort: str | None = None,
    tolerance: float = 0.0,
    delta: float | None = None,
) -> PairedResult:
    """Paired comparison of one metric in scope at the policy's alpha: non-inferiority with
    margin ``-tolerance``, or, given ``delta``, the required-lift test with margin ``+delta``.

    The sweep view uses it for the in-domain lift and the out-of-domain delta.
    """
    cand, base = paired_values(candidate, baseline, metric, domain, cohort)
    direction = higher_is_better(metric, candidate, baseline) if cand.size else True
    binary = metric in candidate.binary_metrics or metric in baseline.binary_metrics
    if delta is not None:
        return improvement_comparison(
            cand, base, delta=delta, alpha=policy.alpha, higher_is_better=direction, binary=binary
        )
    return paired_comparison(
        cand,
        base,
        tolerance=tolerance,
        alpha=policy.alpha,
        higher_is_better=direction,
        binary=binary,
    )
