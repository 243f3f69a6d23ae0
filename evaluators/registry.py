"""The evaluator registry: built-ins plus the ``tunegate.evaluators`` entry point group.

Third parties register a class in their package metadata::

    [project.entry-points."tunegate.evaluators"]
    my_metric = "my_pkg.metric:MyEvaluator"

The entry point name must equal the class's ``name``. Two sources claiming one name is an
error naming both (never "last one wins"); an unknown name is an error listing the known ones.
Classes are imported lazily, on first :func:`get_class`, so listing names loads no model.

The registry also holds the :class:`~evaluators.base.ModelScorer` declarations of the scorers
the engine runs on the model itself (held-out perplexity, log-likelihood scoring), so that
:func:`metric_index` and :func:`higher_is_better` answer for every metric tunegate stores.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from evaluators import loglikelihood, perplexity
from evaluators.base import NEEDABLE_FIELDS, Evaluator, Metric, ModelScorer
from evaluators.errors import (
    DuplicateEvaluatorError,
    InvalidEvaluatorError,
    UnknownEvaluatorError,
    UnknownMetricError,
)

ENTRY_POINT_GROUP = "tunegate.evaluators"

#: Built-in evaluators: registry name → "module:Class".
BUILTINS: dict[str, str] = {
    "answer_match": "evaluators.answer_match:AnswerMatchEvaluator",
    "collapse": "evaluators.collapse:CollapseEvaluator",
    "hallucination": "evaluators.hallucination:HallucinationEvaluator",
    "json_validity": "evaluators.json_validity:JsonValidityEvaluator",
    "reference_match": "evaluators.reference_match:ReferenceMatchEvaluator",
    "refusal": "evaluators.refusal:RefusalEvaluator",
    "relevance": "evaluators.relevance:RelevanceEvaluator",
}

#: Built-in scorers of the model itself (declarations only: the engine runs them).
MODEL_SCORERS: tuple[ModelScorer, ...] = (perplexity.SCORER, loglikelihood.SCORER)

#: What a dataset is scored with when its request names no evaluators (each one applies
#: only to the examples it can score, so all built-ins are safe defaults).
DEFAULT_EVALUATORS: tuple[str, ...] = (
    "relevance",
    "hallucination",
    "json_validity",
    "reference_match",
    "answer_match",
    "refusal",
    "collapse",
)


@dataclass(frozen=True)
class _Source:
    """Where a name comes from: a built-in "module:Class" or an entry point."""

    target: str
    description: str
    entry_point: EntryPoint | None = None

    def load(self) -> object:
        if self.entry_point is not None:
            return self.entry_point.load()
        module_name, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)


def _describe(entry_point: EntryPoint) -> str:
    dist = entry_point.dist
    origin = f" from distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {entry_point.name!r} = {entry_point.value!r}{origin}"


class Registry:
    """Evaluator names → classes, from built-ins and entry points, without duplicates; plus
    the model scorers' declarations (by default the built-in ones, with the built-ins)."""

    def __init__(
        self,
        builtins: dict[str, str] | None = None,
        plugins: Iterable[EntryPoint] = (),
        model_scorers: Iterable[ModelScorer] | None = None,
    ) -> None:
        self._sources: dict[str, _Source] = {}
        self._classes: dict[str, type[Evaluator]] = {}
        if model_scorers is None:
            model_scorers = MODEL_SCORERS if builtins is None else ()
        self.model_scorers = tuple(model_scorers)
        for name, target in (BUILTINS if builtins is None else builtins).items():
            self._add(name, _Source(target, f"built-in {target!r}"))
        for entry_point in plugins:
            self._add(
                entry_point.name, _Source(entry_point.value, _describe(entry_point), entry_point)
            )

    @classmethod
    def discover(cls) -> Registry:
        """Built-ins plus every installed ``tunegate.evaluators`` entry point."""
        return cls(plugins=entry_points(group=ENTRY_POINT_GROUP))

    def _add(self, name: str, source: _Source) -> None:
        existing = self._sources.get(name)
        if existing is not None:
            raise DuplicateEvaluatorError(
                f"evaluator name {name!r} is registered twice: by {existing.description} "
                f"and by {source.description}"
            )
        self._sources[name] = source

    def available(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._sources)

    def get_class(self, name: str) -> type[Evaluator]:
        """The evaluator class registered as ``name`` (imported on first use, then cached).

        Raises UnknownEvaluatorError (listing the known names) or InvalidEvaluatorError when
        the target is not an Evaluator subclass with valid metadata named ``name``.
        """
        cached = self._classes.get(name)
        if cached is not None:
            return cached
        source = self._sources.get(name)
        if source is None:
            known = ", ".join(self.available()) or "(none)"
            raise UnknownEvaluatorError(f"unknown evaluator {name!r}; known evaluators: {known}")
        try:
            loaded = source.load()
        except (ImportError, AttributeError) as exc:
            raise InvalidEvaluatorError(f"cannot import {source.description}: {exc}") from exc
        evaluator_class = validate_class(loaded, name, source.description)
        self._classes[name] = evaluator_class
        return evaluator_class

    def create(self, name: str, **options: object) -> Evaluator:
        """An instance of the evaluator ``name`` built with ``options``."""
        return self.get_class(name)(**options)

    def metric_index(self) -> dict[str, tuple[str, Metric]]:
        """Every metric name → (evaluator or model scorer name, Metric); loads every class.

        Raises DuplicateEvaluatorError when two of them declare the same metric name.
        """
        declared = [(name, self.get_class(name).metrics) for name in self.available()]
        declared += [(scorer.name, scorer.metrics) for scorer in self.model_scorers]
        index: dict[str, tuple[str, Metric]] = {}
        for name, metrics in declared:
            for metric in metrics:
                if metric.name in index:
                    raise DuplicateEvaluatorError(
                        f"metric {metric.name!r} is declared by evaluators "
                        f"{index[metric.name][0]!r} and {name!r}"
                    )
                index[metric.name] = (name, metric)
        return index

    def higher_is_better(self, metric: str) -> bool:
        """Which direction is better for ``metric``; UnknownMetricError if none declares it."""
        found = self.metric_index().get(metric)
        if found is None:
            raise UnknownMetricError(f"no evaluator or model scorer declares metric {metric!r}")
        return found[1].higher_is_better


def validate_class(loaded: object, name: str, where: str) -> type[Evaluator]:
    """Check ``loaded`` is a concrete Evaluator subclass called ``name`` with sound metadata."""
    if not (isinstance(loaded, type) and issubclass(loaded, Evaluator)):
        raise InvalidEvaluatorError(f"{where} is {loaded!r}, not an Evaluator subclass")
    problems: list[str] = []
    if getattr(loaded, "__abstractmethods__", None):
        problems.append(f"abstract methods {sorted(loaded.__abstractmethods__)}")
    if getattr(loaded, "name", None) != name:
        problems.append(f"class name attribute {getattr(loaded, 'name', None)!r} != {name!r}")
    if not isinstance(getattr(loaded, "version", None), str):
        problems.append("no string `version`")
    metrics = getattr(loaded, "metrics", None)
    if not (isinstance(metrics, tuple) and metrics and all(isinstance(m, Metric) for m in metrics)):
        problems.append("`metrics` is not a non-empty tuple of Metric")
    else:
        for metric in metrics:
            if not (math.isfinite(metric.low) and math.isfinite(metric.high)):
                problems.append(f"metric {metric.name!r} has a non-finite range")
            elif metric.low > metric.high:
                problems.append(f"metric {metric.name!r} has low > high")
    if not loaded.needs <= NEEDABLE_FIELDS:
        problems.append(f"`needs` {set(loaded.needs)} not within {set(NEEDABLE_FIELDS)}")
    if problems:
        raise InvalidEvaluatorError(f"{where}: " + "; ".join(problems))
    return loaded


@functools.cache
def default_registry() -> Registry:
    """The process-wide registry (built once; ``default_registry.cache_clear()`` to rescan)."""
    return Registry.discover()


def available() -> list[str]:
    """Names of every registered evaluator, sorted."""
    return default_registry().available()


def get_class(name: str) -> type[Evaluator]:
    """The evaluator class registered as ``name``; UnknownEvaluatorError lists known names."""
    return default_registry().get_class(name)


def create(name: str, **options: object) -> Evaluator:
    """An evaluator instance: ``create("hallucination", backend="nli", nli_model=path)``."""
    return default_registry().create(name, **options)


def metric_index() -> dict[str, tuple[str, Metric]]:
    """Every registered metric name → (evaluator or model scorer name, Metric)."""
    return default_registry().metric_index()


def higher_is_better(metric: str) -> bool:
    """Which direction is better for a registered metric (UnknownMetricError if unknown)."""
    return default_registry().higher_is_better(metric)


def default_evaluators() -> list[str]:
    """The evaluator names used when a request names none."""
    return list(DEFAULT_EVALUATORS)
