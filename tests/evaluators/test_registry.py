"""The registry: built-ins, real entry points, duplicates and unknown names."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from evaluators import registry
from evaluators.base import Example, Metric, ModelScorer
from evaluators.collapse import CollapseEvaluator
from evaluators.errors import (
    DuplicateEvaluatorError,
    InvalidEvaluatorError,
    UnknownEvaluatorError,
    UnknownMetricError,
)
from evaluators.registry import ENTRY_POINT_GROUP, Registry
from tests.evaluators.plugin_example import AnswerLength

PLUGIN = "tests.evaluators.plugin_example"


def entry_point(name: str, target: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"{PLUGIN}:{target}", group=ENTRY_POINT_GROUP)


def test_builtins_are_available() -> None:
    assert {"relevance", "hallucination", "json_validity", "reference_match", "collapse"} <= set(
        registry.available()
    )
    assert registry.get_class("collapse") is CollapseEvaluator
    assert isinstance(registry.create("collapse"), CollapseEvaluator)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownEvaluatorError) as caught:
        registry.get_class("bleurt")
    message = str(caught.value)
    assert "'bleurt'" in message
    assert "collapse" in message
    assert "relevance" in message


def test_entry_point_evaluator_is_loaded_and_scores() -> None:
    plugins = Registry(plugins=[entry_point("answer_length", "AnswerLength")])
    assert "answer_length" in plugins.available()
    assert "relevance" in plugins.available()
    assert plugins.get_class("answer_length") is AnswerLength
    evaluator = plugins.create("answer_length", cap=4)
    rows = evaluator.score([Example(id="a", input="q")] * 2, ["one two", "a b c d e f"])
    assert rows == [{"answer_length": 0.5}, {"answer_length": 1.0}]


def test_entry_point_clashing_with_a_builtin_is_refused() -> None:
    with pytest.raises(DuplicateEvaluatorError) as caught:
        Registry(plugins=[entry_point("relevance", "AnswerLength")])
    message = str(caught.value)
    assert "built-in 'evaluators.relevance:RelevanceEvaluator'" in message
    assert f"{PLUGIN}:AnswerLength" in message


def test_two_entry_points_with_one_name_are_refused() -> None:
    with pytest.raises(DuplicateEvaluatorError, match="registered twice"):
        Registry(
            plugins=[
                entry_point("answer_length", "AnswerLength"),
                entry_point("answer_length", "Misnamed"),
            ]
        )


@pytest.mark.parametrize(
    ("name", "target", "complaint"),
    [
        ("answer_len", "AnswerLength", "class name attribute 'answer_length' != 'answer_len'"),
        ("forty_two", "NOT_A_CLASS", "not an Evaluator subclass"),
        ("missing", "DoesNotExist", "cannot import"),
    ],
)
def test_broken_entry_points_fail_clearly(name: str, target: str, complaint: str) -> None:
    plugins = Registry(plugins=[entry_point(name, target)])
    with pytest.raises(InvalidEvaluatorError, match=complaint):
        plugins.get_class(name)


def test_installed_entry_points_are_discovered() -> None:
    discovered = Registry.discover()
    assert set(registry.BUILTINS) <= set(discovered.available())


def test_metric_index_maps_metrics_to_evaluators() -> None:
    plugins = Registry(builtins={"collapse": "evaluators.collapse:CollapseEvaluator"})
    index = plugins.metric_index()
    assert set(index) == {"empty_output", "repetition"}
    assert index["repetition"][0] == "collapse"
    assert not index["repetition"][1].higher_is_better


def test_clashing_metric_names_are_refused() -> None:
    plugins = Registry(plugins=[entry_point("repetition_clone", "RepetitionClone")])
    with pytest.raises(DuplicateEvaluatorError, match="'repetition' is declared by"):
        plugins.metric_index()


def test_one_registry_knows_the_direction_of_every_metric() -> None:
    """Perplexity and log-likelihood metrics are declared like any evaluator's."""
    index = registry.metric_index()
    assert index["perplexity_word"][0] == index["perplexity_token"][0] == "perplexity"
    assert registry.higher_is_better("perplexity_word") is False
    assert registry.higher_is_better("perplexity_token") is False
    assert index["target_nll"][0] == "loglikelihood"
    assert registry.higher_is_better("target_nll") is False
    assert registry.higher_is_better("choice_acc") is True
    assert registry.higher_is_better("token_f1") is True
    assert registry.higher_is_better("repetition") is False
    with pytest.raises(UnknownMetricError, match="'no_such_metric'"):
        registry.higher_is_better("no_such_metric")


def test_model_scorer_metrics_cannot_clash_with_an_evaluator() -> None:
    clash = ModelScorer("ppl_clone", "1", (Metric("repetition", higher_is_better=False),))
    plugins = Registry(
        builtins={"collapse": "evaluators.collapse:CollapseEvaluator"}, model_scorers=[clash]
    )
    with pytest.raises(DuplicateEvaluatorError, match="'repetition' is declared by"):
        plugins.metric_index()
