"""Scorers for tunegate: per-example evaluators behind one interface, plus held-out perplexity.

Importing this package loads no model: evaluators load theirs on first use.
"""

from evaluators.base import Evaluator, Example, Metric, check_scores
from evaluators.errors import (
    DuplicateEvaluatorError,
    EvaluatorConfigError,
    EvaluatorError,
    InvalidEvaluatorError,
    InvalidExampleError,
    InvalidScoreError,
    UnknownEvaluatorError,
)
from evaluators.registry import available, create, default_evaluators, get_class

__all__ = [
    "DuplicateEvaluatorError",
    "Evaluator",
    "EvaluatorConfigError",
    "EvaluatorError",
    "Example",
    "InvalidEvaluatorError",
    "InvalidExampleError",
    "InvalidScoreError",
    "Metric",
    "UnknownEvaluatorError",
    "available",
    "check_scores",
    "create",
    "default_evaluators",
    "get_class",
]
