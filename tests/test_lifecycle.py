"""The evaluation lifecycle: which moves start where, and the named 409 for the rest."""

from __future__ import annotations

import pytest

from service.errors import Conflict, InvalidRequest
from service.lifecycle import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    TERMINAL,
    EvaluationAlreadyFinished,
    IllegalTransition,
    Move,
    check,
    parse_status,
    sources,
)


def test_every_move_starts_from_the_statuses_the_table_names() -> None:
    assert sources(Move.CLAIM) == (QUEUED, RUNNING)  # running: only with an expired lease
    assert sources(Move.FINISH) == (RUNNING,)
    assert sources(Move.CANCEL) == (QUEUED,)
    assert set(sources(Move.RETRY)) == {FAILED, CANCELLED}
    assert sources(Move.REQUEUE) == (RUNNING,)
    assert sources(Move.RESCORE) == (SUCCEEDED,)
    assert TERMINAL == {SUCCEEDED, FAILED, CANCELLED}
    assert [str(s) for s in STATUSES] == ["queued", "running", "succeeded", "failed", "cancelled"]


@pytest.mark.parametrize(
    ("move", "current", "target"),
    [
        (Move.FINISH, QUEUED, SUCCEEDED),  # never claimed
        (Move.FINISH, RUNNING, QUEUED),  # finish ends in a terminal status
        (Move.RETRY, SUCCEEDED, QUEUED),
        (Move.RETRY, RUNNING, QUEUED),
        (Move.CANCEL, SUCCEEDED, CANCELLED),
        (Move.CLAIM, FAILED, RUNNING),
    ],
)
def test_an_illegal_move_is_a_named_409(move: Move, current: str, target: str) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check(move, current, target)
    assert caught.value.status_code == 409
    assert isinstance(caught.value, Conflict)
    assert str(move) in caught.value.detail


def test_legal_moves_pass_and_the_cancel_error_is_a_transition_error() -> None:
    check(Move.CLAIM, QUEUED, RUNNING)
    check(Move.FINISH, RUNNING, CANCELLED)
    check(Move.RETRY, FAILED, QUEUED)
    assert issubclass(EvaluationAlreadyFinished, IllegalTransition)
    assert parse_status("failed") is FAILED
    with pytest.raises(InvalidRequest, match="statuses are queued, running"):
        parse_status("sideways")
