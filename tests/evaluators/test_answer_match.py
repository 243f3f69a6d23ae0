"""answer_match: normalised inclusion of an accepted answer (case, punctuation, articles,
number words and digits), 1 or 0 per example."""

from __future__ import annotations

import pytest

from evaluators import registry
from evaluators.answer_match import AnswerMatchEvaluator, answer_match, normalize_answer
from evaluators.base import Example


@pytest.mark.parametrize(
    ("output", "answers", "score"),
    [
        ("The capital of Australia is Canberra.", ["Canberra"], 1.0),
        ("The capital of Australia is Sydney.", ["Canberra"], 0.0),
        ("CANBERRA!", ["canberra"], 1.0),  # case and punctuation
        ("It's the Pacific Ocean", ["Pacific"], 1.0),
        ("Pacific ocean", ["The Pacific Ocean"], 1.0),  # articles
        ("There are seven continents.", ["7"], 1.0),  # number word -> digits
        ("A spider has 8 legs", ["eight"], 1.0),  # digits <- number word
        ("It boils at one hundred degrees", ["100"], 1.0),
        ("Twenty-one", ["21"], 1.0),
        ("about 1,000 people", ["one thousand"], 1.0),
        ("100 degrees", ["10"], 0.0),  # whole words only
        ("A Parisian café", ["Paris"], 0.0),
        ("Sir Isaac Newton", ["Newton", "Isaac Newton"], 1.0),  # any accepted answer
        ("", ["Paris"], 0.0),
        ("anything", ["the"], 0.0),  # an answer with no words never matches
    ],
)
def test_answer_match(output: str, answers: list[str], score: float) -> None:
    assert answer_match(output, answers) == score


def test_normalisation() -> None:
    assert normalize_answer("Twenty-one thousand, two hundred and five") == ["21205"]
    assert normalize_answer("The Eiffel Tower") == ["eiffel", "tower"]


def test_evaluator_scores_only_examples_with_answers_and_is_registered() -> None:
    evaluator = registry.create("answer_match")
    assert isinstance(evaluator, AnswerMatchEvaluator)
    assert evaluator.metric("answer_match").binary
    examples = [
        Example(id="a", input="Capital of France?", answers=["Paris"], domain="out"),
        Example(id="b", input="Say hi", reference="hi"),
    ]
    assert evaluator.score(examples, ["Paris, of course.", "hi"]) == [{"answer_match": 1.0}, {}]
    assert "answer_match" in registry.default_evaluators()
