"""The evaluators' own exceptions, one root so the service can translate them at its boundary.

``evaluators`` imports nothing from ``service``; the service maps these onto its
``TunegateError`` hierarchy (``UnknownEvaluatorError`` → ``UnknownEvaluator``, the rest →
``ScoringError`` or a 4xx for bad options) with ``raise ... from exc``.
"""

from __future__ import annotations


class EvaluatorError(Exception):
    """Root of every error the evaluators raise on purpose."""


class UnknownEvaluatorError(EvaluatorError, KeyError):
    """No built-in or entry point provides the requested evaluator name.

    A KeyError too (a name lookup that failed), but printed as its plain message.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownMetricError(EvaluatorError, KeyError):
    """No evaluator or model scorer declares the metric."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateEvaluatorError(EvaluatorError):
    """Two sources (built-in or entry points) register the same evaluator name."""


class InvalidEvaluatorError(EvaluatorError):
    """A registered object is not a usable Evaluator class (wrong type, bad metadata)."""


class EvaluatorConfigError(EvaluatorError, ValueError):
    """An unusable evaluator option: a missing model folder, a model without the needed labels."""


class InvalidScoreError(EvaluatorError, ValueError):
    """An evaluator produced a score that is NaN, infinite, out of range or undeclared."""


class InvalidExampleError(EvaluatorError, ValueError):
    """An example cannot be scored as given (e.g. its JSON schema is itself invalid)."""
