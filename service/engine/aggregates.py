"""Per-metric aggregates over scopes (all, each domain, each cohort) with bootstrap CIs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.gate.stats import mean_ci


@dataclass(frozen=True)
class ExampleScope:
    key: str
    domain: str
    cohort: str | None


@dataclass(frozen=True)
class AggregateRow:
    metric: str
    scope: str  # all | domain | cohort | model
    scope_value: str
    n: int
    mean: float
    ci_low: float | None
    ci_high: float | None


def compute_aggregates(
    examples: Sequence[ExampleScope],
    scores: Mapping[str, Mapping[str, float]],
    *,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[AggregateRow]:
    """Mean and (1 − alpha) bootstrap CI of every metric over every scope.

    Scopes: ``all``; ``domain`` = in / out; ``cohort`` = each named cohort. A metric
    absent for an example (the evaluator did not apply) is left out of that mean,
    and ``n`` says how many examples the mean is over.
    """
    buckets: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for ex in examples:
        for metric, value in scores.get(ex.key, {}).items():
            buckets[(metric, "all", "")].append(value)
            buckets[(metric, "domain", ex.domain)].append(value)
            if ex.cohort:
                buckets[(metric, "cohort", ex.cohort)].append(value)
    rows = []
    for (metric, scope, scope_value), values in sorted(buckets.items()):
        arr = np.asarray(values, dtype=float)
        ci = mean_ci(arr, alpha=alpha, n_resamples=n_resamples, seed=seed)
        rows.append(
            AggregateRow(
                metric=metric,
                scope=scope,
                scope_value=scope_value,
                n=int(arr.size),
                mean=float(arr.mean()),
                ci_low=ci.ci_low,
                ci_high=ci.ci_high,
            )
        )
    return rows
