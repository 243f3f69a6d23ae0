"""Fitting a judge's threshold on labelled data and reporting it on held-out data.

Judgment-type evaluators (refusal, hallucination) ship labelled sets. Their thresholds are
fitted on one half (:func:`split_halves`) by maximising F1 (:func:`fit_threshold`) and their
precision / recall / F1 are reported on the other half (:func:`precision_recall_f1`), so the
quoted figures are not measured on the data the thresholds were chosen on.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class BinaryReport:
    """Precision, recall and F1 of the positive class, with the confusion counts."""

    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def n(self) -> int:
        return (
            self.true_positives + self.false_positives + self.false_negatives + self.true_negatives
        )

    @property
    def accuracy(self) -> float:
        return (self.true_positives + self.true_negatives) / self.n if self.n else 0.0


def precision_recall_f1(predicted: Sequence[bool], actual: Sequence[bool]) -> BinaryReport:
    """P/R/F1 of ``predicted`` against ``actual`` (positive class: True); 0.0 where undefined."""
    if len(predicted) != len(actual):
        raise ValueError(f"{len(predicted)} predictions for {len(actual)} labels")
    tp = sum(p and a for p, a in zip(predicted, actual, strict=True))
    fp = sum(p and not a for p, a in zip(predicted, actual, strict=True))
    fn = sum(a and not p for p, a in zip(predicted, actual, strict=True))
    tn = len(actual) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryReport(precision, recall, f1, tp, fp, fn, tn)


def fit_threshold(scores: Sequence[float], actual: Sequence[bool]) -> float:
    """The threshold ``t`` maximising F1 of ``score >= t`` against ``actual``.

    Candidates are the midpoints between consecutive distinct scores (plus one below the
    lowest and one above the highest), so the fitted value sits between two observed scores
    rather than on one. Among equally good candidates the middle one is taken, which keeps
    the widest margin on both sides. Returns a value rounded to 3 decimals.
    """
    if len(scores) != len(actual) or not scores:
        raise ValueError("need one label per score and at least one score")
    distinct = sorted(set(scores))
    candidates = [distinct[0] - 1e-3]
    candidates += [(a + b) / 2 for a, b in itertools.pairwise(distinct)]
    candidates.append(distinct[-1] + 1e-3)
    f1s = [precision_recall_f1([s >= t for s in scores], actual).f1 for t in candidates]
    best = max(f1s)
    tied = [t for t, f1 in zip(candidates, f1s, strict=True) if f1 == best]
    return round(tied[len(tied) // 2], 3)


def split_halves(rows: Sequence[dict[str, Any]], by: str = "kind") -> tuple[list[int], list[int]]:
    """Indices of the fitting half and the reporting half: alternate rows within each ``by``.

    Deterministic (file order), and stratified so each half has every kind of case.
    """
    seen: dict[Any, int] = defaultdict(int)
    fit: list[int] = []
    report: list[int] = []
    for index, row in enumerate(rows):
        (fit if seen[row[by]] % 2 == 0 else report).append(index)
        seen[row[by]] += 1
    return fit, report


def load_labelled(name: str) -> list[dict[str, Any]]:
    """The rows of the labelled JSONL set ``name`` shipped in ``evaluators/data``."""
    text = resources.files("evaluators").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
