"""What the registry says about every metric: its direction and whether it is binary."""

from __future__ import annotations

from functools import lru_cache

from evaluators import registry


@lru_cache(maxsize=1)
def metric_directions() -> dict[str, bool]:
    """metric name → higher_is_better, for every metric the registry knows (the evaluators'
    and the model scorers': perplexity, log-likelihood)."""
    return {name: metric.higher_is_better for name, (_, metric) in registry.metric_index().items()}


@lru_cache(maxsize=1)
def binary_metrics() -> frozenset[str]:
    """Metrics whose scores are 0 or 1 (the gate judges them with exact paired tests)."""
    return frozenset(name for name, (_, m) in registry.metric_index().items() if m.binary)
