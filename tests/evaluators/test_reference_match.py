"""Reference match: SQuAD normalisation, exact match and token F1."""

from __future__ import annotations

import pytest

from evaluators.base import Example
from evaluators.normalize import squad_normalize
from evaluators.reference_match import ReferenceMatchEvaluator, exact_match, token_f1


def test_normalisation_ignores_case_punctuation_articles_and_spacing() -> None:
    assert squad_normalize("  The  Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert exact_match("the Eiffel Tower.", "Eiffel   tower") == 1.0
    assert exact_match("An apple", "apple pie") == 0.0


def test_token_f1() -> None:
    # prediction "eiffel tower paris" vs gold "eiffel tower": P = 2/3, R = 1 → F1 = 0.8
    assert token_f1("The Eiffel Tower, Paris", "Eiffel Tower") == pytest.approx(0.8)
    assert token_f1("bananas", "Eiffel Tower") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("a", "Paris") == 0.0


def test_evaluator_needs_a_reference() -> None:
    evaluator = ReferenceMatchEvaluator()
    examples = [Example(id="r", input="Capital?", reference="Paris"), Example(id="n", input="Hi")]
    assert evaluator.score(examples, ["paris.", "Hello"]) == [
        {"exact_match": 1.0, "token_f1": 1.0},
        {},
    ]
