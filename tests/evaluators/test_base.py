"""check_scores is the one gate every score passes: it must reject bad values loudly, and
Evaluator.score (final) puts every subclass's scores through it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from evaluators import perplexity
from evaluators.base import Evaluator, Example, LocalModels, Metric, check_scores
from evaluators.collapse import CollapseEvaluator
from evaluators.errors import InvalidScoreError
from evaluators.hallucination import HallucinationEvaluator
from evaluators.refusal import RefusalEvaluator
from evaluators.relevance import RelevanceEvaluator


class Echo(Evaluator):
    """Returns whatever rows it is given (to exercise check_scores)."""

    name: ClassVar[str] = "echo"
    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("echo", higher_is_better=True, low=-1.0, high=1.0),
    )
    needs: ClassVar[frozenset[str]] = frozenset({"reference"})

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        return [
            {"echo": float(output)} if self.applies_to(e) else {}
            for e, output in zip(examples, outputs, strict=True)
        ]


WITH_REF = Example(id="r", input="q", reference="a")
NO_REF = Example(id="n", input="q")


def test_default_applies_to_uses_needs() -> None:
    assert Echo().applies_to(WITH_REF)
    assert not Echo().applies_to(NO_REF)


def test_valid_scores_pass_through() -> None:
    assert check_scores(Echo(), [WITH_REF, NO_REF], [{"echo": -0.5}, {}]) == [{"echo": -0.5}, {}]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"echo": float("nan")}, {}], "not finite"),
        ([{"echo": float("inf")}, {}], "not finite"),
        ([{"echo": 1.5}, {}], r"outside \[-1.0, 1.0\]"),
        ([{"other": 0.1}, {}], "undeclared metric 'other'"),
        ([{"echo": 0.1}, {"echo": 0.1}], "does not apply"),
        ([{"echo": 0.1}], "1 score dicts for 2 examples"),
    ],
)
def test_bad_scores_are_rejected(rows: list[dict[str, float]], message: str) -> None:
    with pytest.raises(InvalidScoreError, match=message):
        check_scores(Echo(), [WITH_REF, NO_REF], rows)


class Undeclared(Echo):
    """Scores a metric it never declared."""

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        return [{"echo": 0.5, "secret": 0.5} for _ in examples]


class Eager(Echo):
    """Scores every example, including those it does not apply to."""

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        return [{"echo": 0.5} for _ in examples]


class Short(Echo):
    """Drops the last example."""

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        return [{"echo": 0.5} for _ in examples[1:]]


def test_score_passes_valid_subclass_scores() -> None:
    assert Echo().score([WITH_REF, NO_REF], ["-0.25", "9"]) == [{"echo": -0.25}, {}]


@pytest.mark.parametrize(
    ("evaluator", "outputs", "message"),
    [
        (Echo(), ["nan", "0"], "echo is nan \\(not finite\\)"),
        (Echo(), ["-inf", "0"], "not finite"),
        (Echo(), ["1.5", "0"], r"echo=1.5 outside \[-1.0, 1.0\]"),
        (Undeclared(), ["0", "0"], "undeclared metric 'secret'"),
        (Eager(), ["0", "0"], "example 'n': scored an example it does not apply to"),
        (Short(), ["0", "0"], "1 score dicts for 2 examples"),
    ],
)
def test_score_rejects_what_a_subclass_returns(
    evaluator: Evaluator, outputs: list[str], message: str
) -> None:
    with pytest.raises(InvalidScoreError, match=message):
        evaluator.score([WITH_REF, NO_REF], outputs)


def test_score_checks_the_batch_before_the_subclass_sees_it() -> None:
    with pytest.raises(ValueError, match="2 examples but 1 outputs"):
        Echo().score([WITH_REF, NO_REF], ["0"])
    with pytest.raises(TypeError, match="output 0 is int"):
        Echo().score([WITH_REF], [0])  # type: ignore[list-item]


def test_score_is_final() -> None:
    with pytest.raises(TypeError, match=r"overrides Evaluator\.score, which is final"):

        class Overrider(Echo):  # pragma: no cover - the class statement itself fails
            def score(  # type: ignore[misc]
                self, examples: Sequence[Example], outputs: Sequence[str]
            ) -> list[dict[str, float]]:
                return [{"echo": float("nan")} for _ in examples]


def test_evaluators_say_which_local_models_they_use() -> None:
    """What the service passes each evaluator comes from the evaluator, not a name switch."""
    models = LocalModels(embedding=Path("/m/emb"), nli=Path("/m/nli"), refusal=Path("/m/ref"))
    assert RelevanceEvaluator.options_for(models) == {"model_path": "/m/emb"}
    assert HallucinationEvaluator.options_for(models) == {
        "embedding_model_path": "/m/emb",
        "backend": "nli",
        "nli_model_path": "/m/nli",
    }
    assert RefusalEvaluator.options_for(models) == {
        "embedding_model_path": "/m/emb",
        "backend": "classifier",
        "classifier_model_path": "/m/ref",
    }
    assert CollapseEvaluator.options_for(models) == {}
    assert RelevanceEvaluator.options_for(LocalModels()) == {}
    assert HallucinationEvaluator.options_for(LocalModels()) == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"perplexity_word": float("nan")}, "perplexity_word is nan"),
        ({"perplexity_token": 0.5}, r"perplexity_token=0.5 outside \[1.0, inf\]"),
        ({"perplexity_bytes": 2.0}, "undeclared metric 'perplexity_bytes'"),
    ],
)
def test_model_scorers_follow_the_same_contract(values: dict[str, float], message: str) -> None:
    assert perplexity.SCORER.check({"perplexity_word": 12.5}, "held-out") == {
        "perplexity_word": 12.5
    }
    with pytest.raises(InvalidScoreError, match=f"scorer 'perplexity', held-out: {message}"):
        perplexity.SCORER.check(values, "held-out")
