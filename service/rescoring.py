"""Re-score an evaluation's stored outputs: a new, upgraded or reconfigured evaluator
costs no forward pass.

``rescore_evaluation`` queues a finished evaluation again, optionally with another
evaluator set; ``rescore_evaluations`` queues several in one unit of work (a worker then
runs those of one base, dataset and config as one group: each scorer built once, no model
loaded). The job then finds every output stored (nothing to generate), keeps the
scores whose evaluator (name, version, options) is unchanged, deletes the rest, scores
what is missing from the stored text, and recomputes the aggregates; the model is not
even loaded. The evaluation's gate decisions (as candidate or as baseline) are marked
superseded when it is queued, and decided again from the new scores when it succeeds.
See :mod:`service.engine.reuse`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from evaluators import registry
from service.db.models import Evaluation
from service.errors import InvalidRequest, UnknownEvaluator
from service.evaluation_commands import requeue
from service.evaluations import get_evaluation
from service.jsontypes import JSONObject, JSONValue
from service.lifecycle import IllegalTransition, Move
from service.queries.decisions import supersede


class EvaluationNotRescorable(IllegalTransition):
    """A rescore asked of an evaluation that has not succeeded (queued, running, failed)."""


def check_evaluators(names: Sequence[str]) -> list[str]:
    """The names sorted and unique; raises ``UnknownEvaluator`` listing the known ones."""
    if not names:
        raise InvalidRequest("evaluators must name at least one evaluator")
    known = set(registry.available())
    unknown = sorted(set(names) - known)
    if unknown:
        raise UnknownEvaluator(
            f"unknown evaluator(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(sorted(known))}"
        )
    return sorted(set(names))


def rescore_evaluation(
    session: Session, evaluation_id: int, evaluators: Sequence[str] | None = None
) -> Evaluation:
    """Queue a succeeded evaluation to be scored again from its stored outputs.

    ``evaluators`` replaces the evaluation's evaluator set (``None`` keeps it; the
    registry's current versions and the server's options apply either way). A
    conditional update, like retry. Raises ``EvaluationNotFound``, ``UnknownEvaluator``
    (422), and ``EvaluationNotRescorable`` (409) unless it succeeded (a failed one is
    retried instead).
    """
    evaluation = get_evaluation(session, evaluation_id)
    config: JSONObject = dict(evaluation.config or {})
    if evaluators is not None:
        config["evaluators"] = list[JSONValue](check_evaluators(evaluators))
    moved = requeue(session, evaluation_id, Move.RESCORE, config=config)
    session.refresh(evaluation)
    if not moved:
        raise EvaluationNotRescorable(
            f"evaluation {evaluation_id} is {evaluation.status}; only a succeeded evaluation "
            "can be re-scored (retry a failed one)"
        )
    # its decisions judged the scores about to be replaced: decided again when it succeeds
    supersede(session, evaluation_id)
    return evaluation


def rescore_evaluations(
    session: Session, evaluation_ids: Sequence[int], evaluators: Sequence[str] | None = None
) -> list[Evaluation]:
    """Queue several succeeded evaluations to be scored again, all or none.

    As :func:`rescore_evaluation` for each id (in the order given, duplicates once); the
    first that does not exist or has not succeeded raises, and the caller's unit of work
    rolls back the ones queued before it.
    """
    if not evaluation_ids:
        raise InvalidRequest("evaluation_ids must name at least one evaluation")
    names = check_evaluators(evaluators) if evaluators is not None else None
    return [rescore_evaluation(session, i, names) for i in dict.fromkeys(evaluation_ids)]
