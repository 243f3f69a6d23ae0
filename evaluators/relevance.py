"""Answer relevance: embedding cosine similarity of the output with the input and the reference.

- ``relevance``: cosine(output, input), for every example.
- ``relevance_reference``: cosine(output, reference), only when the example has a reference.

Embeddings come from a sentence-transformers model (default: the packaged all-MiniLM-L6-v2,
unit-normalised, so the dot product is the cosine). Cosine is clipped to [0, 1] rather than
mapped from [-1, 1]: for MiniLM unrelated texts sit near 0 and slightly negative values carry
no meaning, so clipping keeps the familiar cosine scale (0.6+ is "on topic") and keeps the full
[0, 1] range for differences that matter, where ``(c + 1) / 2`` would halve them.
An empty (whitespace-only) output scores 0.0 on both: it answers nothing.

Where it is weak: similarity is topical, not factual; an on-topic wrong answer scores about as
high as a right one, and a restated question scores high on ``relevance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from evaluators.base import Evaluator, Example, LocalModels, Metric
from evaluators.embeddings import embed, load_embedding_model


class RelevanceEvaluator(Evaluator):
    """Cosine similarity of output↔input and output↔reference, clipped to [0, 1]."""

    name: ClassVar[str] = "relevance"
    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("relevance", higher_is_better=True),
        Metric("relevance_reference", higher_is_better=True),
    )

    def __init__(
        self, *, model_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64
    ) -> None:
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def options_for(cls, models: LocalModels) -> dict[str, object]:
        """The deployment's embedding model, when one is configured."""
        return {"model_path": str(models.embedding)} if models.embedding else {}

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        """Relevance for each example (and reference relevance where there is a reference)."""
        model = load_embedding_model(self.model_path, self.device)
        # Embed each distinct text once: inputs and references repeat across a batch.
        index: dict[str, int] = {}
        for example, output in zip(examples, outputs, strict=True):
            for text in (output, example.input, example.reference):
                if text is not None:
                    index.setdefault(text, len(index))
        vectors = embed(model, list(index), self.batch_size)

        def cosine(a: str, b: str) -> float:
            value = float(vectors[index[a]] @ vectors[index[b]])
            return min(max(value, 0.0), 1.0)

        scores: list[dict[str, float]] = []
        for example, output in zip(examples, outputs, strict=True):
            empty = not output.strip()
            row = {"relevance": 0.0 if empty else cosine(output, example.input)}
            if example.reference is not None:
                row["relevance_reference"] = 0.0 if empty else cosine(output, example.reference)
            scores.append(row)
        return scores
