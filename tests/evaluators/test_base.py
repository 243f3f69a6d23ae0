"""check_scores is the one gate every score passes: it must reject bad values loudly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pytest

from evaluators.base import Evaluator, Example, Metric, check_scores
from evaluators.errors import InvalidScoreError


class Echo(Evaluator):
    """Returns whatever rows it is given (to exercise check_scores)."""

    name: ClassVar[str] = "echo"
    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("echo", higher_is_better=True, low=-1.0, high=1.0),
    )
    needs: ClassVar[frozenset[str]] = frozenset({"reference"})

    def score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
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
