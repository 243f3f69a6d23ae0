"""Running the configured evaluators over a chunk of (example, output) pairs.

Each evaluator's :meth:`~evaluators.base.Evaluator.score` enforces the score contract itself
(one dict per example, declared metrics, finite, in range); here its failures become
:class:`ScoringError`, and each score is stamped with the scorer that made it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from evaluators import registry
from evaluators.base import Evaluator, Example, LocalModels, ModelScorer
from evaluators.errors import EvaluatorError, InvalidScoreError, UnknownEvaluatorError
from service.errors import ScoringError, UnknownEvaluator
from service.settings import Settings


@dataclass(frozen=True)
class ScoreValue:
    value: float
    evaluator: str
    version: str
    options: str = ""  # digest of the evaluator's options (see options_digest)


def options_digest(options: Mapping[str, object]) -> str:
    """A short stable digest of an evaluator's options ("" for none, as old rows have)."""
    if not options:
        return ""
    blob = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: What a score depends on besides the output: (evaluator name, version, options digest).
ScorerIdentity = tuple[str, str, str]


def local_models(settings: Settings) -> LocalModels:
    """The local model folders this deployment offers its evaluators."""
    return LocalModels(
        embedding=settings.embedding_model, nli=settings.nli_model, refusal=settings.refusal_model
    )


def checked(scorer: ModelScorer, values: Mapping[str, float], where: str) -> dict[str, float]:
    """A model scorer's values under the same contract as an evaluator's (declared metric,
    finite, in range); a violation is a :class:`ScoringError`."""
    try:
        return scorer.check(values, where)
    except InvalidScoreError as exc:
        raise ScoringError(str(exc)) from exc


class EvaluatorSet:
    """The evaluators of one run, built once (their models load once per worker).

    Each evaluator's options come from the evaluator itself
    (:meth:`~evaluators.base.Evaluator.options_for` the deployment's local models).
    """

    def __init__(self, names: Sequence[str], settings: Settings) -> None:
        self.evaluators: list[Evaluator] = []
        self.options: dict[str, dict[str, object]] = {}
        models = local_models(settings)
        for name in names:
            try:
                evaluator_class = registry.get_class(name)
                self.options[name] = evaluator_class.options_for(models)
                self.evaluators.append(evaluator_class(**self.options[name]))
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

    def score(
        self,
        examples: Sequence[Example],
        outputs: Sequence[str],
        only: Collection[str] | None = None,
    ) -> list[dict[str, ScoreValue]]:
        """Scores of every evaluator (or those in ``only``) for each example; a NaN, an
        out-of-range value or an undeclared metric is a :class:`ScoringError`."""
        merged: list[dict[str, ScoreValue]] = [{} for _ in examples]
        identities = self.identities
        for evaluator in self.evaluators:
            if only is not None and evaluator.name not in only:
                continue
            try:
                rows = evaluator.score(examples, outputs)
            except Exception as exc:
                raise ScoringError(f"evaluator {evaluator.name!r} failed: {exc}") from exc
            name, version, options = identities[evaluator.name]
            for row, target in zip(rows, merged, strict=True):
                for metric, value in row.items():
                    target[metric] = ScoreValue(value, name, version, options)
        return merged
