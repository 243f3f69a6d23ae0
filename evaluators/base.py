"""The evaluator interface: examples in, one dict of metric values per example out.

An evaluator is a small class whose metadata lives on the class (``name``, ``version``,
``metrics``, ``needs``) and whose scoring is batched. Scores are plain floats keyed by globally
unique metric names; an example the evaluator does not apply to gets ``{}``.

One contract, enforced in one place: :meth:`Evaluator.score` is final. It checks the batch
(one output string per example), calls the subclass's :meth:`Evaluator._score`, and checks
what came back with :func:`check_scores` (one dict per example, declared metric names, finite
values inside each metric's range, nothing for an example it does not apply to). Subclasses
write no checks of their own.

Scorers that need the model itself rather than its outputs (held-out perplexity, log-likelihood
scoring) are not evaluators; each declares its metrics as a :class:`ModelScorer`, so the
registry knows every metric's direction and range from one kind of declaration.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, final

from evaluators.errors import InvalidScoreError

#: The optional example fields an evaluator may declare in ``needs``.
NEEDABLE_FIELDS = frozenset(
    {"reference", "context", "json_schema", "answers", "choices", "target", "expect"}
)


@dataclass(frozen=True)
class Example:
    """One eval example: what a dataset version holds (defaults filled in) and scorers see.

    ``input`` is the prompt's text (for a chat example, its last user message; the whole
    conversation is ``messages``, ``{"role", "content"}`` dicts). ``answers``: accepted
    answers; ``choices`` with ``answer``, the index of the right one; ``target``: a gold
    continuation; ``expect``: ``"refuse"`` or ``"comply"``.
    """

    id: str
    input: str
    reference: str | None = None
    context: str | None = None
    domain: Literal["in", "out"] = "in"
    cohort: str | None = None
    json_schema: dict[str, Any] | None = None
    messages: list[dict[str, str]] | None = None
    answers: list[str] | None = None
    choices: list[str] | None = None
    answer: int | None = None
    target: str | None = None
    expect: Literal["refuse", "comply"] | None = None


@dataclass(frozen=True)
class Metric:
    """A metric an evaluator produces: its globally unique name, direction and valid range."""

    name: str
    higher_is_better: bool
    low: float = 0.0
    high: float = 1.0
    binary: bool = False
    """Every score is 0 or 1 (right / wrong): the gate judges it with exact paired tests."""


@dataclass(frozen=True)
class ModelScorer:
    """The declaration of a scorer that works on the model, not on its outputs.

    Held-out perplexity (one value per model) and log-likelihood scoring (per example, from
    the model's log-probabilities) are computed by the engine, so they are not
    :class:`Evaluator` subclasses; their metrics are declared here the same way, and the
    registry answers for them like for any evaluator's.
    """

    name: str
    version: str
    metrics: tuple[Metric, ...]

    def check(self, values: Mapping[str, float], where: str) -> dict[str, float]:
        """``values`` as plain floats, when each is a declared metric, finite and in range.

        Raises :class:`InvalidScoreError` naming this scorer, ``where`` and the metric.
        """
        declared = {metric.name: metric for metric in self.metrics}
        return _checked_row(declared, values, f"scorer {self.name!r}, {where}")


@dataclass(frozen=True)
class LocalModels:
    """The deployment's local model folders an evaluator may use (``None``: not configured)."""

    embedding: Path | None = None
    nli: Path | None = None
    refusal: Path | None = None


class Evaluator(ABC):
    """A per-example scorer.

    Subclasses set the class variables and implement :meth:`_score`; :meth:`score` is final
    and enforces the contract around it. Options (model path, device, thresholds) are
    constructor keyword arguments whose defaults work offline. Bump ``version`` whenever a
    change would alter any score.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "score" in cls.__dict__:
            raise TypeError(
                f"{cls.__qualname__} overrides Evaluator.score, which is final: "
                "implement _score (the base class checks the batch and the scores)"
            )

    @classmethod
    def options_for(cls, models: LocalModels) -> dict[str, object]:
        """Constructor options that make this evaluator use the deployment's ``models``.

        By default none: an evaluator that can use a configured model says so here.
        """
        return {}

    def applies_to(self, example: Example) -> bool:
        """Whether this evaluator scores ``example``; by default, all of ``needs`` are present."""
        return all(getattr(example, field) is not None for field in self.needs)

    @final
    def score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        """Score ``outputs[i]`` for ``examples[i]``.

        Returns one dict per example (metric name → value), ``{}`` where the evaluator does not
        apply; every value finite and inside its metric's ``[low, high]``. Raises ValueError /
        TypeError for a batch that is not one output string per example and
        :class:`InvalidScoreError` when the subclass returns anything else.
        """
        check_batch(examples, outputs)
        return check_scores(self, examples, self._score(examples, outputs))

    @abstractmethod
    def _score(
        self, examples: Sequence[Example], outputs: Sequence[str]
    ) -> Sequence[Mapping[str, float]]:
        """The scores of a checked batch (one output string per example): one mapping per
        example, empty where the evaluator does not apply. :meth:`score` validates them."""

    def metric(self, name: str) -> Metric:
        """The declared metric called ``name`` (KeyError if this evaluator has none)."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(f"evaluator {self.name!r} declares no metric {name!r}")


def check_batch(examples: Sequence[Example], outputs: Sequence[str]) -> None:
    """Raise ValueError unless there is exactly one output string per example."""
    if len(examples) != len(outputs):
        raise ValueError(f"got {len(examples)} examples but {len(outputs)} outputs")
    for index, output in enumerate(outputs):
        if not isinstance(output, str):
            raise TypeError(f"output {index} is {type(output).__name__}, expected str")


def check_scores(
    evaluator: Evaluator,
    examples: Sequence[Example],
    scores: Sequence[Mapping[str, float]],
) -> list[dict[str, float]]:
    """Validate what ``evaluator.score`` is about to return and return it as plain dicts.

    Raises :class:`InvalidScoreError` naming the evaluator, example id and metric when the
    count is wrong, a metric is undeclared, a value is NaN/infinite/out of range, or a
    non-applicable example got scores.
    """
    if len(scores) != len(examples):
        raise InvalidScoreError(
            f"evaluator {evaluator.name!r} returned {len(scores)} score dicts "
            f"for {len(examples)} examples"
        )
    declared = {metric.name: metric for metric in evaluator.metrics}
    checked: list[dict[str, float]] = []
    for example, row in zip(examples, scores, strict=True):
        where = f"evaluator {evaluator.name!r}, example {example.id!r}"
        if row and not evaluator.applies_to(example):
            raise InvalidScoreError(f"{where}: scored an example it does not apply to")
        checked.append(_checked_row(declared, row, where))
    return checked


def _checked_row(
    declared: Mapping[str, Metric], row: Mapping[str, float], where: str
) -> dict[str, float]:
    """``row`` as plain floats: each metric declared, finite, 0/1 if binary, in range."""
    clean: dict[str, float] = {}
    for metric_name, value in row.items():
        metric = declared.get(metric_name)
        if metric is None:
            raise InvalidScoreError(f"{where}: undeclared metric {metric_name!r}")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidScoreError(f"{where}: {metric_name} is {number} (not finite)")
        if metric.binary and number not in (0.0, 1.0):
            raise InvalidScoreError(f"{where}: {metric_name}={number} is not 0 or 1")
        if not metric.low <= number <= metric.high:
            raise InvalidScoreError(
                f"{where}: {metric_name}={number} outside [{metric.low}, {metric.high}]"
            )
        clean[metric_name] = number
    return clean
