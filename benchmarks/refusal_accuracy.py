"""Accuracy of the refusal evaluator's offline default on the labelled set it ships with.

    PYTHONPATH=. python benchmarks/refusal_accuracy.py

The labelled set (``evaluators/data/refusal_labelled.jsonl``: refusals, partial refusals,
refusals with a safe alternative, compliances, compliances with a caveat and compliances that
use refusal-like words) is split in two halves, alternating within each kind. The similarity
threshold is fitted on the first half (max F1) and precision / recall / F1 of "refuses" are
printed for the second half: for the refusal phrases alone, the MiniLM margin alone, and the
two combined (the evaluator's decision), then the errors of the combined rule.
"""

from __future__ import annotations

import time

from evaluators.calibration import (
    BinaryReport,
    fit_threshold,
    load_labelled,
    precision_recall_f1,
    split_halves,
)
from evaluators.refusal import (
    FITTED_SIMILARITY_THRESHOLD,
    RefusalEvaluator,
    matches_refusal_pattern,
)


def line(name: str, report: BinaryReport) -> str:
    return (
        f"{name:<28} P={report.precision:.3f} R={report.recall:.3f} F1={report.f1:.3f} "
        f"acc={report.accuracy:.3f} (tp={report.true_positives} fp={report.false_positives} "
        f"fn={report.false_negatives} tn={report.true_negatives})"
    )


def main() -> None:
    rows = load_labelled("refusal_labelled.jsonl")
    fit, held = split_halves(rows)
    labels = [bool(row["refusal"]) for row in rows]
    outputs = [row["output"] for row in rows]
    evaluator = RefusalEvaluator()
    started = time.perf_counter()
    margins = evaluator.refusal_margin(outputs)
    scores = evaluator.decision_scores(outputs)
    elapsed = time.perf_counter() - started
    patterns = [matches_refusal_pattern(output) for output in outputs]

    def on(indices: list[int], values: list[float]) -> list[float]:
        return [values[i] for i in indices]

    held_labels = [labels[i] for i in held]
    fitted = fit_threshold(on(fit, scores), [labels[i] for i in fit])
    margin_only = fit_threshold(on(fit, margins), [labels[i] for i in fit])
    print(
        f"labelled outputs: {len(rows)} ({sum(labels)} refusals); fit half {len(fit)}, "
        f"held-out half {len(held)}; scored in {elapsed:.2f} s"
    )
    print(
        f"threshold fitted on the fit half: {fitted} (shipped default "
        f"{FITTED_SIMILARITY_THRESHOLD}); margin alone: {margin_only}"
    )
    print("held-out half, positive class = refuses:")
    print(
        line("refusal phrases only", precision_recall_f1([patterns[i] for i in held], held_labels))
    )
    print(
        line(
            "MiniLM margin only",
            precision_recall_f1([margins[i] >= margin_only for i in held], held_labels),
        )
    )
    combined = [scores[i] >= fitted for i in held]
    print(line("combined (the evaluator)", precision_recall_f1(combined, held_labels)))
    print(line("combined, whole set", precision_recall_f1([s >= fitted for s in scores], labels)))
    for kind in sorted({row["kind"] for row in rows}):
        idx = [i for i in held if rows[i]["kind"] == kind]
        right = sum((scores[i] >= fitted) == labels[i] for i in idx)
        print(f"  {kind:<26} {right}/{len(idx)} right")
    for i, decision in zip(held, combined, strict=True):
        if decision != labels[i]:
            print(
                f"  wrong: {rows[i]['id']} ({rows[i]['kind']}, score {scores[i]:.3f}): "
                f"{rows[i]['output'][:90]}"
            )


if __name__ == "__main__":
    main()
