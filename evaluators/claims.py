"""Claims and the evidence words in them: the text analysis behind the hallucination scorer.

A *claim* is one sentence of the output that asserts something: it has at least one content
word (not a stopword) or a number. For each claim we keep its numbers (``1,889.0`` → ``1889``),
its capitalised words after the first (proper names, acronyms) and its crudely stemmed content
words. Sources get the same treatment so the two can be compared as sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")
_WORD = re.compile(r"[^\W\d_][\w'-]*")

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in into is
    it its itself just let me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    sure okay ok well here's it's that's there's i'm i'll can't don't doesn't isn't
    aren't""".split()
)


@dataclass(frozen=True)
class Claim:
    """One asserting sentence of an output with its numbers, proper names and content words."""

    text: str
    numbers: frozenset[str]
    entities: frozenset[str]
    content: frozenset[str]


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split at line breaks and after . ! ? followed by whitespace."""
    sentences: list[str] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        sentences.extend(part.strip() for part in _SENTENCE_END.split(line) if part.strip())
    return sentences


def numbers(text: str) -> frozenset[str]:
    """Numbers in ``text`` in a canonical form (thousands separators and trailing zeros dropped)."""
    found: set[str] = set()
    for match in _NUMBER.finditer(text):
        raw = match.group().replace(",", "")
        try:
            found.add(format(Decimal(raw).normalize(), "f"))
        except InvalidOperation:  # pragma: no cover - the regex only matches decimals
            found.add(raw)
    return frozenset(found)


def stem(word: str) -> str:
    """A crude English stem: lower-case, drop a possessive and a plural ``s``."""
    word = word.lower().removesuffix("'s")
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def content_words(text: str) -> frozenset[str]:
    """Stemmed words of ``text`` that are not stopwords."""
    return frozenset(stem(word) for word in _WORD.findall(text) if word.lower() not in STOPWORDS)


def vocabulary(text: str) -> frozenset[str]:
    """Every word of ``text``, lower-cased and stemmed (what a proper name is looked up in)."""
    return frozenset(stem(word) for word in _WORD.findall(text))


def entities(sentence: str) -> frozenset[str]:
    """Capitalised non-stopwords after the sentence's first word, stemmed (likely proper names).

    The first word is skipped because sentence case capitalises it whatever it is.
    """
    found = _WORD.findall(sentence)[1:]
    return frozenset(
        stem(word) for word in found if word[0].isupper() and word.lower() not in STOPWORDS
    )


def extract_claims(text: str) -> list[Claim]:
    """The asserting sentences of ``text`` (those with a content word or a number)."""
    claims: list[Claim] = []
    for sentence in split_sentences(text):
        claim = Claim(sentence, numbers(sentence), entities(sentence), content_words(sentence))
        if claim.numbers or claim.content:
            claims.append(claim)
    return claims
