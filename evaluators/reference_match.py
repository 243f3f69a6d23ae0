"""Reference match: SQuAD-style exact match and token F1 of the output against the reference.

Both compare :func:`~evaluators.normalize.squad_normalize` forms (case, punctuation, articles
and whitespace ignored). As in the SQuAD script, when either side normalises to no tokens,
F1 is 1.0 if both are empty and 0.0 otherwise. Applies only to examples with a reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from evaluators.base import Evaluator, Example, Metric
from evaluators.normalize import squad_normalize, squad_tokens


def exact_match(output: str, reference: str) -> float:
    """1.0 when the normalised output equals the normalised reference, else 0.0."""
    return float(squad_normalize(output) == squad_normalize(reference))


def token_f1(output: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over normalised tokens (SQuAD v1.1)."""
    predicted = squad_tokens(output)
    gold = squad_tokens(reference)
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted)
    recall = common / len(gold)
    return 2 * precision * recall / (precision + recall)


class ReferenceMatchEvaluator(Evaluator):
    """``exact_match`` and ``token_f1`` against ``example.reference``."""

    name: ClassVar[str] = "reference_match"
    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("exact_match", higher_is_better=True, binary=True),
        Metric("token_f1", higher_is_better=True),
    )
    needs: ClassVar[frozenset[str]] = frozenset({"reference"})

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        """Exact match and token F1 per example; ``{}`` where there is no reference."""
        scores: list[dict[str, float]] = []
        for example, output in zip(examples, outputs, strict=True):
            if not self.applies_to(example) or example.reference is None:
                scores.append({})
                continue
            scores.append(
                {
                    "exact_match": exact_match(output, example.reference),
                    "token_f1": token_f1(output, example.reference),
                }
            )
        return scores
