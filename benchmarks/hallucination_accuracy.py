"""Accuracy of the hallucination evaluator's ``overlap`` default on its labelled set.

    PYTHONPATH=. python benchmarks/hallucination_accuracy.py

``evaluators/data/hallucination_labelled.jsonl`` holds (sources, claim, supported?) triples:
for each of 20 short source passages, a verbatim claim and a paraphrase (supported), and a
negation, a swapped number, a swapped name and a world-knowledge claim (true in the world,
absent from the sources: unsupported). The two thresholds are fitted on one half (max F1 on a
grid, alternate rows within each kind) and precision / recall / F1 of "unsupported" (what the
evaluator flags) are printed for the other half, with accuracy per kind and the errors.
"""

from __future__ import annotations

import itertools
import time

from evaluators.base import Example
from evaluators.calibration import load_labelled, precision_recall_f1, split_halves
from evaluators.claims import extract_claims
from evaluators.hallucination import (
    FITTED_OVERLAP_THRESHOLD,
    FITTED_SIMILARITY_THRESHOLD,
    HallucinationEvaluator,
    OverlapEvidence,
)

SIMILARITY_GRID = [round(0.3 + 0.025 * i, 3) for i in range(29)]  # 0.300 .. 1.000
OVERLAP_GRID = [round(0.2 + 0.05 * i, 2) for i in range(17)]  # 0.20 .. 1.00


def fit(evidence: list[OverlapEvidence], unsupported: list[bool]) -> tuple[float, float]:
    """The (similarity, overlap) grid point with the best F1; the first one in grid order."""
    best: tuple[float, float, float] | None = None
    for similarity, overlap in itertools.product(SIMILARITY_GRID, OVERLAP_GRID):
        flagged = [not e.supported(similarity, overlap) for e in evidence]
        f1 = precision_recall_f1(flagged, unsupported).f1
        if best is None or f1 > best[0]:
            best = (f1, similarity, overlap)
    assert best is not None
    return best[1], best[2]


def main() -> None:
    rows = load_labelled("hallucination_labelled.jsonl")
    examples = [Example(id=row["id"], input="", context=row["sources"]) for row in rows]
    claims = [extract_claims(row["claim"]) for row in rows]
    if any(len(found) != 1 for found in claims):
        raise SystemExit("every labelled claim must be one sentence")
    started = time.perf_counter()
    evaluator = HallucinationEvaluator()
    evidence = [e[0] for e in evaluator.overlap_evidence(examples, claims, [True] * len(rows))]
    elapsed = time.perf_counter() - started
    unsupported = [not row["supported"] for row in rows]
    fit_half, held = split_halves(rows)
    similarity, overlap = fit([evidence[i] for i in fit_half], [unsupported[i] for i in fit_half])
    print(
        f"labelled claims: {len(rows)} ({sum(unsupported)} unsupported); "
        f"fit half {len(fit_half)}, held-out half {len(held)}; scored in {elapsed:.2f} s"
    )
    print(
        f"fitted on the fit half: similarity_threshold={similarity} overlap_threshold={overlap}"
        f" (shipped defaults {FITTED_SIMILARITY_THRESHOLD} / {FITTED_OVERLAP_THRESHOLD})"
    )
    for name, indices in (("held-out half", held), ("whole set", list(range(len(rows))))):
        flagged = [not evidence[i].supported(similarity, overlap) for i in indices]
        r = precision_recall_f1(flagged, [unsupported[i] for i in indices])
        print(
            f"{name:<14} positive = unsupported: P={r.precision:.3f} R={r.recall:.3f} "
            f"F1={r.f1:.3f} acc={r.accuracy:.3f} (tp={r.true_positives} "
            f"fp={r.false_positives} fn={r.false_negatives} tn={r.true_negatives})"
        )
    before = [not e.supported(0.6, 0.6) for e in evidence]
    no_negation = [
        not OverlapEvidence(e.novel, e.similarity, e.coverage).supported(0.6, 0.6) for e in evidence
    ]
    for name, flags in (
        ("version 1 rules (no negation veto, hand-set 0.6/0.6)", no_negation),
        ("negation veto, hand-set 0.6/0.6", before),
    ):
        r = precision_recall_f1([flags[i] for i in held], [unsupported[i] for i in held])
        print(f"  for comparison, {name}: P={r.precision:.3f} R={r.recall:.3f} F1={r.f1:.3f}")
    for kind in sorted({row["kind"] for row in rows}):
        idx = [i for i in held if rows[i]["kind"] == kind]
        right = sum((not evidence[i].supported(similarity, overlap)) == unsupported[i] for i in idx)
        print(f"  {kind:<16} {right}/{len(idx)} right")
    for i in held:
        if (not evidence[i].supported(similarity, overlap)) != unsupported[i]:
            print(f"  wrong: {rows[i]['id']}: {rows[i]['claim']}")


if __name__ == "__main__":
    main()
