"""The domain's exceptions: one root, subclasses named for what went wrong.

The HTTP layer renders every :class:`TunegateError` as
``{"error": "<ClassName>", "detail": "..."}`` with the class's ``status_code``;
the CLI prints the detail on one line. Library errors are translated at the
boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class TunegateError(Exception):
    """Root of every error tunegate raises on purpose."""

    status_code: int = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# --- 4xx: the caller can fix it -------------------------------------------------


class InvalidRequest(TunegateError):
    status_code = 422


class InvalidDataset(InvalidRequest):
    """A dataset push that cannot be stored (the detail names the line)."""


class InvalidPolicy(InvalidRequest):
    """A gate policy that does not validate."""


class InvalidTrainingLog(InvalidRequest):
    """A training log that is neither trainer_state.json nor step JSONL."""


class CheckpointRejected(InvalidRequest):
    """A checkpoint refused before anything in it is loaded or executed."""


class CheckpointNotVisible(CheckpointRejected):
    """The checkpoint path does not exist on the server or lies outside its allowed roots.

    A client that has the folder locally reacts by uploading it instead.
    """


class UnknownEvaluator(InvalidRequest):
    """An evaluator name that no built-in or entry point provides."""


class NotFound(TunegateError):
    status_code = 404


class DatasetNotFound(NotFound):
    pass


class DatasetVersionNotFound(NotFound):
    pass


class FamilyNotFound(NotFound):
    pass


class CandidateNotFound(NotFound):
    pass


class EvaluationNotFound(NotFound):
    pass


class DecisionNotFound(NotFound):
    pass


class Conflict(TunegateError):
    status_code = 409


class AlreadyExists(Conflict):
    pass


class ConcurrentUpdate(Conflict):
    """Lost a race with concurrent writers every time it was retried; the client may retry."""


class IdempotencyKeyReused(Conflict):
    """The same Idempotency-Key was sent with a different request body."""


class GateNotPassed(Conflict):
    """Promotion refused: no passing gate decision against the current alias."""


class EvaluationNotFinished(Conflict):
    pass


class NotAuthenticated(TunegateError):
    status_code = 401


class PermissionDenied(TunegateError):
    status_code = 403


# --- 5xx / job failures: the model or the machine ------------------------------


class ModelLoadError(TunegateError):
    status_code = 500


class AdapterNotApplied(TunegateError):
    """The adapter was loaded but the model's logits did not change."""

    status_code = 500


class ScoringError(TunegateError):
    """An evaluator produced something that is not a score (NaN, out of range)."""

    status_code = 500


class EvaluationCancelled(TunegateError):
    status_code = 409


class ServiceBusy(TunegateError):
    """Saturated or briefly without its database: the request changed nothing; retry.

    Rendered as 503 with a ``Retry-After`` header of ``retry_after`` seconds.
    """

    status_code = 503
    retry_after = 1
