"""The evaluation lifecycle: its statuses and the moves between them, in one place.

::

    queued ──claim──▶ running ──finish──▶ succeeded | failed | cancelled
      │  ▲              │  ▲                            │         │
      │  └──requeue─────┘  └─claim (lease expired)      └──retry──┴──▶ queued
      └──cancel──▶ cancelled

- **claim** (:mod:`service.engine.lease`): a worker takes a ``queued`` evaluation, or a
  ``running`` one whose lease expired (its worker died);
- **finish** (:func:`service.engine.storage.finish`): the lease holder records the outcome;
- **cancel** (:mod:`service.evaluation_commands`): a queued evaluation stops at once; a
  running one is flagged and its worker finishes it as ``cancelled``;
- **retry** (:mod:`service.evaluation_commands`): a failed or cancelled one is queued
  again and resumes from its stored rows;
- **requeue** (:mod:`service.worker.recovery`): a running evaluation whose lease expired
  goes back to the queue;
- **rescore** (:mod:`service.rescoring`): a succeeded one is queued again to be scored
  from its stored outputs (new or changed evaluators; nothing is generated).

Each move is a conditional UPDATE whose ``WHERE status IN (...)`` comes from
:func:`sources`, so two actors racing on one row cannot both win. A move asked of a
status it does not start from raises :class:`IllegalTransition` (409).
"""

from __future__ import annotations

from enum import StrEnum

from service.errors import Conflict, InvalidRequest


class EvaluationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


QUEUED = EvaluationStatus.QUEUED
RUNNING = EvaluationStatus.RUNNING
SUCCEEDED = EvaluationStatus.SUCCEEDED
FAILED = EvaluationStatus.FAILED
CANCELLED = EvaluationStatus.CANCELLED

STATUSES: tuple[EvaluationStatus, ...] = tuple(EvaluationStatus)
TERMINAL: frozenset[EvaluationStatus] = frozenset({SUCCEEDED, FAILED, CANCELLED})


class Move(StrEnum):
    CLAIM = "claim"
    FINISH = "finish"
    CANCEL = "cancel"
    RETRY = "retry"
    REQUEUE = "requeue"
    RESCORE = "rescore"


#: move → (statuses it starts from, statuses it may end in)
TRANSITIONS: dict[Move, tuple[frozenset[EvaluationStatus], frozenset[EvaluationStatus]]] = {
    Move.CLAIM: (frozenset({QUEUED, RUNNING}), frozenset({RUNNING})),
    Move.FINISH: (frozenset({RUNNING}), TERMINAL),
    Move.CANCEL: (frozenset({QUEUED}), frozenset({CANCELLED})),
    Move.RETRY: (frozenset({FAILED, CANCELLED}), frozenset({QUEUED})),
    Move.REQUEUE: (frozenset({RUNNING}), frozenset({QUEUED})),
    Move.RESCORE: (frozenset({SUCCEEDED}), frozenset({QUEUED})),
}


class IllegalTransition(Conflict):
    """A lifecycle move asked of an evaluation in a status it does not start from."""


class EvaluationAlreadyFinished(IllegalTransition):
    """A cancel or retry asked of an evaluation whose status does not allow it."""


def sources(move: Move) -> tuple[EvaluationStatus, ...]:
    """The statuses ``move`` starts from, for the conditional UPDATE's ``WHERE``."""
    return tuple(sorted(TRANSITIONS[move][0]))


def check(move: Move, current: str, target: str | None = None) -> None:
    """Raise :class:`IllegalTransition` unless ``move`` may take ``current`` to ``target``."""
    starts, ends = TRANSITIONS[move]
    if current not in starts:
        raise IllegalTransition(
            f"cannot {move} an evaluation that is {current} (only {' or '.join(sorted(starts))})"
        )
    if target is not None and target not in ends:
        raise IllegalTransition(
            f"{move} cannot end in {target!r} (only {' or '.join(sorted(ends))})"
        )


def parse_status(value: str) -> EvaluationStatus:
    """A status from its name; :class:`~service.errors.InvalidRequest` listing the known ones."""
    try:
        return EvaluationStatus(value)
    except ValueError:
        raise InvalidRequest(
            f"unknown status {value!r}; statuses are {', '.join(STATUSES)}"
        ) from None
