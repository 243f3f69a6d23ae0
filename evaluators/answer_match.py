"""Answer correctness: does the output state one of the example's accepted ``answers``?

Normalised inclusion, as lm-evaluation-harness's ``exact_match`` filters (ignore case and
punctuation) and inspect's ``includes()`` scorer do: both the output and every accepted
answer are lower-cased, hyphens split words, punctuation and the articles a/an/the are
dropped, number words become digits ("twenty-one" → "21", "one hundred" → "100"; "1,000"
→ "1000"), and whitespace is collapsed; the example scores 1 when some answer's words occur
as a contiguous run of the output's words ("Paris" is in "It is Paris." but not in
"Parisian"; "10" is not in "100"), else 0.

Known limit, shared with every inclusion scorer: an output that lists several candidates
("Sydney or Canberra") contains the right one. Applies only to examples with ``answers``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from evaluators.base import Evaluator, Example, Metric
from evaluators.normalize import squad_normalize

_UNITS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {
    word: 10 * value
    for value, word in enumerate(
        "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
    )
    if word != "_"
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_DIGIT_GROUPS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    """Replace each run of number words by its value in digits."""
    out: list[str] = []
    total = current = 0
    in_number = False

    def flush() -> None:
        nonlocal total, current, in_number
        if in_number:
            out.append(str(total + current))
        total = current = 0
        in_number = False

    for token in tokens:
        if token in _UNITS or token in _TENS:
            current += _UNITS.get(token, 0) + _TENS.get(token, 0)
            in_number = True
        elif token in _SCALES and in_number:
            scale = _SCALES[token]
            if scale == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * scale
                current = 0
        elif token == "and" and in_number:
            continue  # "one hundred and five"
        else:
            flush()
            out.append(token)
    flush()
    return out


def normalize_answer(text: str) -> list[str]:
    """The words an answer is compared by (see the module docstring)."""
    text = _DIGIT_GROUPS.sub("", text).replace("-", " ").replace("–", " ")
    return _numbers_to_digits(squad_normalize(text).split())


def _contains(words: list[str], phrase: list[str]) -> bool:
    size = len(phrase)
    return any(words[i : i + size] == phrase for i in range(len(words) - size + 1))


def answer_match(output: str, answers: Sequence[str]) -> float:
    """1.0 when ``output`` states one of ``answers`` (normalised inclusion), else 0.0.

    An answer that normalises to no words (e.g. "the") never matches.
    """
    words = normalize_answer(output)
    phrases = [phrase for answer in answers if (phrase := normalize_answer(answer))]
    return float(any(_contains(words, phrase) for phrase in phrases))


class AnswerMatchEvaluator(Evaluator):
    """``answer_match``: 1 when the output contains an accepted answer, else 0."""

    name: ClassVar[str] = "answer_match"
    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("answer_match", higher_is_better=True, binary=True),
    )
    needs: ClassVar[frozenset[str]] = frozenset({"answers"})

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        """``{"answer_match": 0.0 | 1.0}`` per example with answers; ``{}`` otherwise."""
        return [
            {"answer_match": answer_match(output, example.answers)} if example.answers else {}
            for example, output in zip(examples, outputs, strict=True)
        ]
