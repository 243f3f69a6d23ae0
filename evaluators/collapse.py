"""Collapse detectors: empty outputs and degenerate repetition (both lower is better).

- ``empty_output``: 1.0 when the output is empty or whitespace only.
- ``repetition``: the share of the output's word 3-grams that repeat an earlier 3-gram,
  ``1 - distinct / total``, over lower-cased ``\\w+`` words. ``"the the the the"`` has two
  3-grams, one distinct, so 0.5; a long loop tends to 1.0; ordinary prose is near 0.
  Outputs with fewer than three words have no 3-gram and score 0.0 (``empty_output`` is what
  flags an empty answer).

Applies to every example: a fine-tune that collapses does so on any input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from evaluators.base import Evaluator, Example, Metric
from evaluators.normalize import words

NGRAM = 3


def repetition(text: str, n: int = NGRAM) -> float:
    """Share of word n-grams in ``text`` that repeat an earlier one; 0.0 with no n-gram."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


class CollapseEvaluator(Evaluator):
    """``empty_output`` and ``repetition`` for every example."""

    name: ClassVar[str] = "collapse"
    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("empty_output", higher_is_better=False, binary=True),
        Metric("repetition", higher_is_better=False),
    )

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        """Empty-output flag and 3-gram repetition share per example."""
        scores = [
            {"empty_output": float(not output.strip()), "repetition": repetition(output)}
            for output in outputs
        ]
        return scores
