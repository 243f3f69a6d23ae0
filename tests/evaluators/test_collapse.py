"""Collapse: empty outputs and repetition loops."""

from __future__ import annotations

import pytest

from evaluators.base import Example
from evaluators.collapse import CollapseEvaluator, repetition

EXAMPLE = Example(id="x", input="Describe your day.")


def test_repetition_share_of_repeated_trigrams() -> None:
    assert repetition("the the the the") == pytest.approx(0.5)
    assert repetition(" ".join(["the"] * 50)) == pytest.approx(47 / 48)
    assert repetition("I went to the shop and bought some bread for lunch.") == 0.0
    assert repetition("Too short") == 0.0


def test_loop_scores_high_and_prose_low() -> None:
    evaluator = CollapseEvaluator()
    loop = "I am fine. " * 20
    prose = "I woke early, walked the dog, answered email and cooked dinner with friends."
    looped, normal, empty = evaluator.score([EXAMPLE] * 3, [loop, prose, " \n\t"])
    assert looped["repetition"] > 0.9
    assert looped["empty_output"] == 0.0
    assert normal == {"empty_output": 0.0, "repetition": 0.0}
    assert empty == {"empty_output": 1.0, "repetition": 0.0}
