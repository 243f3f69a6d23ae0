"""The evaluator interface: examples in, one dict of metric values per example out.

An evaluator is a small class whose metadata lives on the class (``name``, ``version``,
``metrics``, ``needs``) and whose :meth:`Evaluator.score` is batched. Scores are plain floats
keyed by globally unique metric names; an example the evaluator does not apply to gets ``{}``.
:func:`check_scores` is the one place that enforces the contract (finite, in range, declared).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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


class Evaluator(ABC):
    """A per-example scorer.

    Subclasses set the class variables and implement :meth:`score`. Options (model path,
    device, thresholds) are constructor keyword arguments whose defaults work offline.
    Bump ``version`` whenever a change would alter any score.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    needs: ClassVar[frozenset[str]] = frozenset()

    def applies_to(self, example: Example) -> bool:
        """Whether this evaluator scores ``example``; by default, all of ``needs`` are present."""
        return all(getattr(example, field) is not None for field in self.needs)

    @abstractmethod
    def score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        """Score ``outputs[i]`` for ``examples[i]``.

        Returns one dict per example (metric name → value), ``{}`` where the evaluator does not
        apply. Every value is finite and inside its metric's ``[low, high]``.
        """

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
        clean: dict[str, float] = {}
        for metric_name, value in row.items():
            metric = declared.get(metric_name)
            if metric is None:
                raise InvalidScoreError(f"{where}: undeclared metric {metric_name!r}")
            number = float(value)
            if not math.isfinite(number):
                raise InvalidScoreError(f"{where}: {metric_name} is {number} (not finite)")
            if not metric.low <= number <= metric.high:
                raise InvalidScoreError(
                    f"{where}: {metric_name}={number} outside [{metric.low}, {metric.high}]"
                )
            clean[metric_name] = number
        checked.append(clean)
    return checked
