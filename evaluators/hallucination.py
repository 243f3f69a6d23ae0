"""Hallucination: the share of the output's claims that the sources do not support.

``hallucination`` = unsupported claims / claims, lower is better. Sources are the example's
context, reference and input. The evaluator applies to examples with a context or a reference
(against the input alone, every open-ended answer would look invented).

Claims are the output's sentences that assert something (see :mod:`evaluators.claims`).
An output with no claim at all — empty, whitespace, or filler such as "Sure!" — scores 1.0:
nothing in it is supported, and a fine-tune that collapses to empty answers must not look
perfectly faithful (``collapse.empty_output`` says *why* it scored 1.0).

Backends:

``"overlap"`` (default, offline, no extra model beyond MiniLM). A claim is supported when
  1. every number in it occurs in the sources and every capitalised word after its first word
     (proper names, acronyms) occurs in the sources — a hard veto,
  2. it has the same polarity as the source sentence closest to it (MiniLM): a claim with a
     negation cue (not, no, never, cannot, n't ...) where the closest source sentence has
     none, or the reverse, is unsupported — a second veto, and
  3. it is close to some source sentence: MiniLM cosine ≥ ``similarity_threshold`` with a
     source sentence or a whole source, or at least ``overlap_threshold`` of its stemmed
     content words occur in the sources.
  The thresholds (:data:`FITTED_SIMILARITY_THRESHOLD`, :data:`FITTED_OVERLAP_THRESHOLD`) were
  fitted (max F1 on a grid) on one half of ``evaluators/data/hallucination_labelled.jsonl``
  and are reported on the other half by ``benchmarks/hallucination_accuracy.py`` (README).
  What it measures: whether each sentence is *about* what the sources say, brings in no
  numbers or names that are not there, and does not flip a negation. Where it is weak:
  antonyms and swapped roles between words that are all in the sources ("the library is
  open on Sundays" against "closed on Sundays"); numbers written as words and lower-case
  names escape the veto, and a name in the first word of a sentence is not seen as a name;
  a name in another form ("CEO" for "chief executive") trips it; a correct fact from world
  knowledge on the sources' topic is often judged supported when it shares their words
  (and, by design, unsupported when it does not); very short answers ("Yes.") are poorly
  served — use ``reference_match`` for those.

``"nli"``: a local NLI cross-encoder folder (``nli_model_path``); a claim is supported when
  P(entailment | premise = the sources joined, hypothesis = the claim) ≥ ``nli_threshold``.
  Catches negation and contradictions if the model is good; the premise is truncated to the
  model's length, so long contexts lose their tail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from evaluators.base import Evaluator, Example, LocalModels, Metric
from evaluators.claims import (
    Claim,
    content_words,
    extract_claims,
    numbers,
    split_sentences,
    vocabulary,
)
from evaluators.embeddings import embed, load_embedding_model
from evaluators.errors import EvaluatorConfigError
from evaluators.nli import load_nli_judge

if TYPE_CHECKING:
    import torch

Backend = Literal["overlap", "nli"]
NO_CLAIM_SCORE = 1.0
#: Fitted on one half of ``hallucination_labelled.jsonl`` (benchmarks/hallucination_accuracy.py)
FITTED_SIMILARITY_THRESHOLD = 0.65
FITTED_OVERLAP_THRESHOLD = 0.55


def sources_of(example: Example) -> list[str]:
    """The texts a claim may be supported by: context, reference, input (those present)."""
    return [text for text in (example.context, example.reference, example.input) if text]


class HallucinationEvaluator(Evaluator):
    """Share of unsupported claims in the output (see the module docstring for the rules)."""

    name: ClassVar[str] = "hallucination"
    version: ClassVar[str] = "2"
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("hallucination", higher_is_better=False),)

    def __init__(
        self,
        *,
        backend: Backend = "overlap",
        embedding_model_path: str | Path | None = None,
        nli_model_path: str | Path | None = None,
        device: str = "cpu",
        similarity_threshold: float = FITTED_SIMILARITY_THRESHOLD,
        overlap_threshold: float = FITTED_OVERLAP_THRESHOLD,
        nli_threshold: float = 0.5,
    ) -> None:
        if backend not in ("overlap", "nli"):
            raise EvaluatorConfigError(f"unknown hallucination backend {backend!r}")
        if backend == "nli" and nli_model_path is None:
            raise EvaluatorConfigError(
                "the 'nli' backend needs nli_model_path=<local model folder>"
            )
        self.backend = backend
        self.embedding_model_path = embedding_model_path
        self.device = device
        self.similarity_threshold = similarity_threshold
        self.overlap_threshold = overlap_threshold
        self.nli_threshold = nli_threshold
        # Load (and validate the labels of) the NLI model now, so bad options fail early.
        self._nli = None if nli_model_path is None else load_nli_judge(nli_model_path, device)

    def applies_to(self, example: Example) -> bool:
        """Examples with a context or a reference to check the output against."""
        return example.context is not None or example.reference is not None

    @classmethod
    def options_for(cls, models: LocalModels) -> dict[str, object]:
        """The embedding model for claim matching; with an NLI model, the ``nli`` backend."""
        options: dict[str, object] = {}
        if models.embedding:
            options["embedding_model_path"] = str(models.embedding)
        if models.nli:
            options.update(backend="nli", nli_model_path=str(models.nli))
        return options

    def _score(self, examples: Sequence[Example], outputs: Sequence[str]) -> list[dict[str, float]]:
        """Unsupported-claim share per applicable example; 1.0 for an output with no claim."""
        claims = [extract_claims(output) for output in outputs]
        applies = [self.applies_to(example) for example in examples]
        if self.backend == "nli":
            supported = self._support_by_nli(examples, claims, applies)
        else:
            supported = self._support_by_overlap(examples, claims, applies)
        scores: list[dict[str, float]] = []
        for applicable, flags in zip(applies, supported, strict=True):
            if not applicable:
                scores.append({})
            elif not flags:
                scores.append({"hallucination": NO_CLAIM_SCORE})
            else:
                scores.append({"hallucination": flags.count(False) / len(flags)})
        return scores

    def _support_by_nli(
        self, examples: Sequence[Example], claims: list[list[Claim]], applies: list[bool]
    ) -> list[list[bool]]:
        assert self._nli is not None
        premises: list[str] = []
        hypotheses: list[str] = []
        for example, example_claims, applicable in zip(examples, claims, applies, strict=True):
            if applicable:
                premise = "\n".join(sources_of(example))
                premises.extend(premise for _ in example_claims)
                hypotheses.extend(claim.text for claim in example_claims)
        probabilities = iter(self._nli.entailment_probabilities(premises, hypotheses))
        return [
            [next(probabilities) >= self.nli_threshold for _ in example_claims]
            if applicable
            else []
            for example_claims, applicable in zip(claims, applies, strict=True)
        ]

    def _support_by_overlap(
        self, examples: Sequence[Example], claims: list[list[Claim]], applies: list[bool]
    ) -> list[list[bool]]:
        return [
            [
                evidence.supported(self.similarity_threshold, self.overlap_threshold)
                for evidence in row
            ]
            for row in self.overlap_evidence(examples, claims, applies)
        ]

    def overlap_evidence(
        self, examples: Sequence[Example], claims: list[list[Claim]], applies: list[bool]
    ) -> list[list[OverlapEvidence]]:
        """What the ``overlap`` backend decides each claim's support from (no thresholds)."""
        source_units = [
            _source_units(example) if applicable else []
            for example, applicable in zip(examples, applies, strict=True)
        ]
        similarity = _Similarity(self.embedding_model_path, self.device)
        similarity.add(claim.text for example_claims in claims for claim in example_claims)
        similarity.add(unit for units in source_units for unit in units)
        similarity.encode()
        found: list[list[OverlapEvidence]] = []
        for example, example_claims, units, applicable in zip(
            examples, claims, source_units, applies, strict=True
        ):
            if not applicable:
                found.append([])
                continue
            text = "\n".join(sources_of(example))
            sentence_set = {s for source in sources_of(example) for s in split_sentences(source)}
            known_numbers, known_words, known_content = (
                numbers(text),
                vocabulary(text),
                content_words(text),
            )
            row = []
            for claim in example_claims:
                novel = bool((claim.numbers - known_numbers) or (claim.entities - known_words))
                coverage = (
                    len(claim.content & known_content) / len(claim.content)
                    if claim.content
                    else 1.0
                )
                sentences = [unit for unit in units if unit in sentence_set]
                closest, _ = similarity.closest(claim.text, sentences)
                flipped = negated(claim.text) != negated(closest) if closest else False
                row.append(
                    OverlapEvidence(novel, similarity.best(claim.text, units), coverage, flipped)
                )
            found.append(row)
        return found


@dataclass(frozen=True)
class OverlapEvidence:
    """One claim under the ``overlap`` backend: a number or name absent from the sources
    (``novel``), the best MiniLM cosine with a source unit, the share of its content words
    found in the sources."""

    novel: bool
    similarity: float
    coverage: float
    negation_flipped: bool = False

    def supported(self, similarity_threshold: float, overlap_threshold: float) -> bool:
        return (
            not self.novel
            and not self.negation_flipped
            and (self.similarity >= similarity_threshold or self.coverage >= overlap_threshold)
        )


_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nobody|nothing|neither|nor|cannot)\b|n't\b", re.IGNORECASE
)


def negated(sentence: str) -> bool:
    """Whether ``sentence`` carries a negation cue (not, no, never, cannot, n't ...)."""
    return _NEGATION.search(sentence) is not None


def _source_units(example: Example) -> list[str]:
    """Each source's sentences and the whole source (for claims that paraphrase several)."""
    units: list[str] = []
    for source in sources_of(example):
        units.extend(split_sentences(source))
        units.append(source)
    return list(dict.fromkeys(units))


class _Similarity:
    """Embeds a batch's distinct texts once and answers max-cosine queries."""

    def __init__(self, model_path: str | Path | None, device: str) -> None:
        self._model_path = model_path
        self._device = device
        self._index: dict[str, int] = {}
        self._vectors: torch.Tensor | None = None

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            self._index.setdefault(text, len(self._index))

    def encode(self) -> None:
        if self._index:
            model = load_embedding_model(self._model_path, self._device)
            self._vectors = embed(model, list(self._index))

    def closest(self, claim: str, units: Sequence[str]) -> tuple[str | None, float]:
        """The unit most similar to ``claim`` and its cosine (None, -1.0 with no unit)."""
        if not units or self._vectors is None:
            return None, -1.0
        rows = self._vectors[[self._index[unit] for unit in units]]
        cosines = rows @ self._vectors[self._index[claim]]
        best = int(cosines.argmax())
        return units[best], float(cosines[best])

    def best(self, claim: str, units: Sequence[str]) -> float:
        """The highest cosine between ``claim`` and any of ``units`` (-1.0 with no unit)."""
        if not units or self._vectors is None:
            return -1.0
        rows = self._vectors[[self._index[unit] for unit in units]]
        return float((rows @ self._vectors[self._index[claim]]).max())
