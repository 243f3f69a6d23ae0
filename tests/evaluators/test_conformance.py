"""Every registered evaluator honours the interface: metadata, shape, range, determinism."""

from __future__ import annotations

import math

import pytest

from evaluators import registry
from evaluators.base import NEEDABLE_FIELDS, Evaluator, Example, Metric

EXAMPLES = [
    Example(id="plain", input="What is the capital of France?"),
    Example(
        id="grounded",
        input="When was the Eiffel Tower completed?",
        context="The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
        reference="It was completed in 1889.",
        cohort="facts",
    ),
    Example(
        id="json",
        input="Give the user as JSON.",
        cohort="json",
        json_schema={"type": "object", "required": ["name"]},
        domain="out",
    ),
    Example(id="ood", input="Translate 'bonjour' to English.", reference="Hello", domain="out"),
]
OUTPUTS = [
    "Paris is the capital of France.",
    "The Eiffel Tower was completed in 1889.",
    '{"name": "Ada"}',
    "",
]


@pytest.fixture(scope="module", params=registry.available())
def evaluator(request: pytest.FixtureRequest, minilm: object) -> Evaluator:
    return registry.create(request.param)


def test_class_metadata_is_present_and_typed(evaluator: Evaluator) -> None:
    cls = type(evaluator)
    assert isinstance(cls.name, str)
    assert cls.name in registry.available()
    assert isinstance(cls.version, str)
    assert cls.version
    assert cls.metrics
    assert all(isinstance(metric, Metric) for metric in cls.metrics)
    for metric in cls.metrics:
        assert isinstance(metric.higher_is_better, bool)
        assert math.isfinite(metric.low)
        assert math.isfinite(metric.high)
        assert metric.low < metric.high
    assert isinstance(cls.needs, frozenset)
    assert cls.needs <= NEEDABLE_FIELDS


def test_scores_have_declared_names_in_range_and_match_applicability(
    evaluator: Evaluator,
) -> None:
    rows = evaluator.score(EXAMPLES, OUTPUTS)
    assert isinstance(rows, list)
    assert len(rows) == len(EXAMPLES)
    declared = {metric.name: metric for metric in evaluator.metrics}
    for example, row in zip(EXAMPLES, rows, strict=True):
        if not evaluator.applies_to(example):
            assert row == {}, f"{example.id}: scored although it does not apply"
            continue
        assert row, f"{example.id}: applies but got no score"
        for name, value in row.items():
            assert name in declared
            assert isinstance(value, float)
            assert math.isfinite(value)
            assert declared[name].low <= value <= declared[name].high


def test_scoring_is_deterministic(evaluator: Evaluator) -> None:
    assert evaluator.score(EXAMPLES, OUTPUTS) == evaluator.score(EXAMPLES, OUTPUTS)


def test_batch_and_single_scores_agree(evaluator: Evaluator) -> None:
    batched = evaluator.score(EXAMPLES, OUTPUTS)
    singles = [evaluator.score([e], [o])[0] for e, o in zip(EXAMPLES, OUTPUTS, strict=True)]
    for row, single in zip(batched, singles, strict=True):
        assert row.keys() == single.keys()
        for name in row:
            assert row[name] == pytest.approx(single[name], abs=1e-5)


def test_mismatched_batch_is_refused(evaluator: Evaluator) -> None:
    with pytest.raises(ValueError, match="2 examples but 1 outputs"):
        evaluator.score(EXAMPLES[:2], OUTPUTS[:1])


def test_metric_names_are_globally_unique() -> None:
    index = registry.metric_index()
    declared = [m.name for name in registry.available() for m in registry.get_class(name).metrics]
    declared += [m.name for scorer in registry.MODEL_SCORERS for m in scorer.metrics]
    assert sorted(index) == sorted(declared)


def test_defaults_are_registered() -> None:
    assert set(registry.default_evaluators()) <= set(registry.available())
