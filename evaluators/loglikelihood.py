"""Metrics of log-likelihood records: multiple choice and gold continuations, from numbers alone.

The engine computes log-probabilities of continuations (it has the model); this module turns
them into per-example metrics, exactly as lm-evaluation-harness 0.4.13 turns its
``multiple_choice`` results into ``acc`` and ``acc_norm``:

- ``choice_acc``: 1.0 when the right choice has the highest summed log-likelihood
  (``argmax``, the first one on a tie, as numpy's);
- ``choice_acc_norm``: the same after dividing each log-likelihood by the choice's length in
  characters (lm-eval's ``completion_len``; for ASCII choices, their byte length);
- ``choice_margin``: log-likelihood of the right choice minus that of the best wrong one, in
  nats — positive when right, and it moves before the accuracy flips;
- ``target_logprob``: summed log-probability of the gold continuation (nats, ≤ 0), and
  ``target_nll``: the mean negative log-likelihood per continuation token (nats/token).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from evaluators.base import Metric, ModelScorer

#: The scorer name and version stored with every log-likelihood score row.
NAME = "loglikelihood"
VERSION = "1"

_BIG = 1e9
METRICS: tuple[Metric, ...] = (
    Metric("choice_acc", higher_is_better=True, binary=True),
    Metric("choice_acc_norm", higher_is_better=True, binary=True),
    Metric("choice_margin", higher_is_better=True, low=-_BIG, high=_BIG),
    Metric("target_nll", higher_is_better=False, low=0.0, high=_BIG),
    Metric("target_logprob", higher_is_better=True, low=-_BIG, high=0.0),
)
#: The declaration the registry reads (the engine scores these, not an Evaluator).
SCORER = ModelScorer(NAME, VERSION, METRICS)


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def choice_metrics(
    loglikelihoods: Sequence[float], choices: Sequence[str], answer: int
) -> dict[str, float]:
    """``choice_acc``, ``choice_acc_norm`` and ``choice_margin`` of one multiple-choice item.

    ``loglikelihoods[i]`` is the summed log-probability of choice ``i`` as the continuation.
    Raises ValueError for fewer than two choices, a length mismatch, a bad ``answer`` or a
    non-finite log-likelihood.
    """
    if len(choices) < 2 or len(loglikelihoods) != len(choices):
        raise ValueError(f"{len(loglikelihoods)} log-likelihoods for {len(choices)} choices")
    if not 0 <= answer < len(choices):
        raise ValueError(f"answer {answer} is not an index of {len(choices)} choices")
    if not all(math.isfinite(value) for value in loglikelihoods):
        raise ValueError(f"non-finite log-likelihood in {list(loglikelihoods)}")
    normalised = [
        value / len(choice) for value, choice in zip(loglikelihoods, choices, strict=True)
    ]
    wrong = max(value for i, value in enumerate(loglikelihoods) if i != answer)
    return {
        "choice_acc": float(_argmax(loglikelihoods) == answer),
        "choice_acc_norm": float(_argmax(normalised) == answer),
        "choice_margin": float(loglikelihoods[answer] - wrong),
    }


def target_metrics(logprob: float, n_tokens: int) -> dict[str, float]:
    """``target_logprob`` and ``target_nll`` (per token) of a gold continuation."""
    if n_tokens < 1 or not math.isfinite(logprob):
        raise ValueError(f"cannot score a continuation of {n_tokens} tokens, logprob {logprob}")
    return {"target_logprob": min(float(logprob), 0.0), "target_nll": max(-logprob / n_tokens, 0.0)}
