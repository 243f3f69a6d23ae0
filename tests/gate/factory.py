"""Build :class:`EvalScores` for gate tests from seeded random scores (no database, no model)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from service.gate.decision import EvalScores

DIRECTIONS: dict[str, bool] = {
    "relevance": True,
    "relevance_reference": True,
    "hallucination": False,
    "json_valid": True,
    "json_schema_valid": True,
    "exact_match": True,
    "answer_match": True,
    "token_f1": True,
    "empty_output": False,
    "repetition": False,
    "perplexity_token": False,
    "perplexity_word": False,
}


BINARY = frozenset(
    {"exact_match", "json_valid", "json_schema_valid", "empty_output", "answer_match"}
)


def example_ids(n_in: int, n_out: int) -> dict[str, str]:
    """``{example_id: domain}`` with ``n_in`` in-domain and ``n_out`` out-of-domain ids."""
    ids = {f"in-{i:03d}": "in" for i in range(n_in)}
    ids.update({f"out-{i:03d}": "out" for i in range(n_out)})
    return ids


def base_scores(domains: Mapping[str, str], seed: int = 0) -> dict[str, dict[str, float]]:
    """Plausible baseline per-example scores for every metric."""
    rng = np.random.default_rng(seed)
    scores: dict[str, dict[str, float]] = {}
    for example_id in domains:
        scores[example_id] = {
            "relevance": float(np.clip(rng.normal(0.6, 0.1), 0, 1)),
            "relevance_reference": float(np.clip(rng.normal(0.5, 0.1), 0, 1)),
            "hallucination": float(rng.random() < 0.2),
            "token_f1": float(np.clip(rng.normal(0.4, 0.1), 0, 1)),
            "empty_output": 0.0,
            "repetition": float(np.clip(rng.normal(0.1, 0.03), 0, 1)),
        }
    return scores


def shifted(
    scores: Mapping[str, Mapping[str, float]],
    domains: Mapping[str, str],
    shifts: Mapping[tuple[str, str], float],
    *,
    noise: float = 0.01,
    seed: int = 1,
) -> dict[str, dict[str, float]]:
    """A candidate: baseline scores plus ``shifts[(domain, metric)]`` and small paired noise.

    Metrics not named in ``shifts`` are copied unchanged (no noise).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for example_id, metrics in scores.items():
        row = dict(metrics)
        for (domain, metric), shift in shifts.items():
            if domains[example_id] == domain and metric in row:
                row[metric] = row[metric] + shift + float(rng.normal(0, noise))
        out[example_id] = row
    return out


def evaluation(
    domains: Mapping[str, str],
    per_example: Mapping[str, Mapping[str, float]],
    model_metrics: Mapping[str, float] | None = None,
    cohorts: Mapping[str, str | None] | None = None,
) -> EvalScores:
    """An EvalScores over ``domains`` with the standard metric directions."""
    return EvalScores(
        domains=dict(domains),
        cohorts=dict(cohorts) if cohorts is not None else dict.fromkeys(domains),
        per_example=per_example,
        model_metrics=dict(model_metrics or {"perplexity_word": 20.0, "perplexity_token": 8.0}),
        higher_is_better=DIRECTIONS,
        binary_metrics=BINARY,
    )
