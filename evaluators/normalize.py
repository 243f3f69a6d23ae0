"""Text normalisation shared by the reference-match and collapse scorers.

:func:`squad_normalize` follows the official SQuAD v1.1 evaluation script: lower-case,
drop punctuation, drop the articles a/an/the, collapse whitespace.
"""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_WORD = re.compile(r"\w+")


def squad_normalize(text: str) -> str:
    """Lower-case, remove punctuation and articles, and collapse whitespace (SQuAD v1.1)."""
    lowered = text.lower()
    no_punct = "".join(char for char in lowered if char not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punct)
    return " ".join(no_articles.split())


def squad_tokens(text: str) -> list[str]:
    """The whitespace tokens of :func:`squad_normalize` (the unit of token F1)."""
    return squad_normalize(text).split()


def words(text: str) -> list[str]:
    r"""Lower-cased word tokens (``\w+`` runs): punctuation and spacing never count as words."""
    return _WORD.findall(text.lower())
