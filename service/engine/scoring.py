"""Running the configured evaluators over a chunk of (example, output) pairs."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from evaluators import registry
from evaluators.base import Evaluator, Example
from evaluators.errors import EvaluatorError, UnknownEvaluatorError
from service.errors import ScoringError, UnknownEvaluator
from service.settings import Settings


@dataclass(frozen=True)
class ScoreValue:
    value: float
    evaluator: str
    version: str
    options: str = ""  # digest of the evaluator's options (see options_digest)


def options_digest(options: dict[str, Any]) -> str:
    """A short stable digest of an evaluator's options ("" for none, as old rows have)."""
    if not options:
        return ""
    blob = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: What a score depends on besides the output: (evaluator name, version, options digest).
ScorerIdentity = tuple[str, str, str]


def evaluator_options(name: str, settings: Settings) -> dict[str, Any]:
    """Constructor options the service passes to built-in evaluators."""
    if name == "relevance" and settings.embedding_model:
        return {"model_path": str(settings.embedding_model)}
    if name == "hallucination":
        options: dict[str, Any] = {}
        if settings.embedding_model:
            options["embedding_model_path"] = str(settings.embedding_model)
        if settings.nli_model:
            options.update(backend="nli", nli_model_path=str(settings.nli_model))
        return options
    if name == "refusal":
        refusal: dict[str, Any] = {}
        if settings.embedding_model:
            refusal["embedding_model_path"] = str(settings.embedding_model)
        if settings.refusal_model:
            refusal.update(backend="classifier", classifier_model_path=str(settings.refusal_model))
        return refusal
    return {}


class EvaluatorSet:
    """The evaluators of one run, built once (their models load once per worker)."""

    def __init__(self, names: Sequence[str], settings: Settings) -> None:
        self.evaluators: list[Evaluator] = []
        self.options: dict[str, dict[str, Any]] = {}
        for name in names:
            self.options[name] = evaluator_options(name, settings)
            try:
                self.evaluators.append(registry.create(name, **self.options[name]))
            except UnknownEvaluatorError as exc:
                raise UnknownEvaluator(str(exc)) from exc
            except EvaluatorError as exc:
                raise ScoringError(f"evaluator {name!r} cannot be set up: {exc}") from exc

    @property
    def versions(self) -> dict[str, str]:
        return {e.name: e.version for e in self.evaluators}

    @property
    def identities(self) -> dict[str, ScorerIdentity]:
        """Each evaluator's (name, version, options digest): a stored score with the same
        identity for the same output is reused; any other is re-scored."""
        return {
            e.name: (e.name, e.version, options_digest(self.options[e.name]))
            for e in self.evaluators
        }

    @property
    def directions(self) -> dict[str, bool]:
        return {m.name: m.higher_is_better for e in self.evaluators for m in e.metrics}

    def score(
        self,
        examples: Sequence[Example],
        outputs: Sequence[str],
        only: Collection[str] | None = None,
    ) -> list[dict[str, ScoreValue]]:
        """Scores of every evaluator for each example; a NaN or out-of-range value is an error."""
        merged: list[dict[str, ScoreValue]] = [{} for _ in examples]
        identities = self.identities
        for evaluator in self.evaluators:
            if only is not None and evaluator.name not in only:
                continue
            try:
                rows = evaluator.score(examples, outputs)
            except ScoringError:
                raise
            except Exception as exc:
                raise ScoringError(f"evaluator {evaluator.name!r} failed: {exc}") from exc
            if len(rows) != len(examples):
                raise ScoringError(
                    f"evaluator {evaluator.name!r} returned {len(rows)} rows for "
                    f"{len(examples)} examples"
                )
            ranges = {m.name: (m.low, m.high) for m in evaluator.metrics}
            for example, row, target in zip(examples, rows, merged, strict=True):
                for metric, value in row.items():
                    low, high = ranges.get(metric, (-math.inf, math.inf))
                    if metric not in ranges:
                        raise ScoringError(
                            f"evaluator {evaluator.name!r} produced undeclared metric {metric!r}"
                        )
                    if not math.isfinite(value) or not low <= value <= high:
                        raise ScoringError(
                            f"evaluator {evaluator.name!r} scored example {example.id!r} "
                            f"{metric}={value!r}, outside [{low}, {high}]"
                        )
                    _, version, options = identities[evaluator.name]
                    target[metric] = ScoreValue(float(value), evaluator.name, version, options)
        return merged
