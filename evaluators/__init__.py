"""Scorers for tunegate: per-example evaluators behind one interface, plus held-out perplexity.

Importing this package loads no model: evaluators load theirs on first use.
"""

from evaluators.base import Evaluator, Example, LocalModels, Metric, ModelScorer, check_scores
from evaluators.errors import (
    DuplicateEvaluatorError,
    EvaluatorConfigError,
    EvaluatorError,
    InvalidEvaluatorError,
    InvalidExampleError,
    InvalidScoreError,
    UnknownEvaluatorError,
    UnknownMetricError,
)
from evaluators.registry import (
    available,
    create,
    default_evaluators,
    get_class,
    higher_is_better,
    metric_index,
)

__all__ = [
    "DuplicateEvaluatorError",
    "Evaluator",
    "EvaluatorConfigError",
    "EvaluatorError",
    "Example",
    "InvalidEvaluatorError",
    "InvalidExampleError",
    "InvalidScoreError",
    "LocalModels",
    "Metric",
    "ModelScorer",
    "UnknownEvaluatorError",
    "UnknownMetricError",
    "available",
    "check_scores",
    "create",
    "default_evaluators",
    "get_class",
    "higher_is_better",
    "metric_index",
]
