"""A tiny real third-party evaluator, reached in the registry tests through an EntryPoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from evaluators.base import Evaluator, Example, Metric


class AnswerLength(Evaluator):
    """Output length in words, capped: 1.0 at ``cap`` words or more."""

    name: ClassVar[str] = "answer_length"
    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("answer_length", higher_is_better=True),)

    def __init__(self, *, cap: int = 10) -> None:
        self.cap = cap

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        return [{"answer_length": min(len(o.split()), self.cap) / self.cap} for o in outputs]


class Misnamed(AnswerLength):
    """Registered under a name other than its own ``name``."""


NOT_A_CLASS = 42


class RepetitionClone(AnswerLength):
    """Declares a metric name that the built-in ``collapse`` already owns."""

    name: ClassVar[str] = "repetition_clone"
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("repetition", higher_is_better=False),)
