"""Submitting a candidate and waiting for its gate decision — what ``tunegate submit`` and the
demo both do, over HTTP only.

Path or upload: the candidate is first registered *by path* (the absolute local path), which
costs nothing when the server runs on the same machine or shares the file system. When the
server answers that the path does not exist or lies outside its
allowed roots (``422 CheckpointNotVisible``, a :class:`CheckpointNotVisibleError` here), and
the folder does exist here, the folder is packed into a tar.gz and
uploaded instead (``POST /v1/candidates/upload``). ``upload=True`` uploads straight away;
``upload=False`` never does. Both attempts carry the same ``Idempotency-Key``, and the
client reuses it on every retry, so a candidate is registered at most once.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from service.api.schemas.candidates import CandidateSubmitted
from service.api.schemas.decisions import DecisionOut
from service.api.schemas.evaluations import EvaluationDetail
from service.cli.client import (
    CheckpointNotVisibleError,
    ClientError,
    TunegateClient,
    new_idempotency_key,
)
from service.jsontypes import JSONObject


@dataclass(frozen=True)
class CandidateRequest:
    """What ``tunegate submit`` sends about one checkpoint."""

    checkpoint: Path
    family: str
    learning_rate: float
    kind: str | None = None
    sweep: str | None = None
    dataset: str | None = None
    training_log: Path | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    training_run: str | None = None

    def metadata(self, *, with_path: bool) -> JSONObject:
        """The JSON body of the registration (the training log inlined as text).

        An evaluation is queued with the registration when a dataset is named.
        """
        body: JSONObject = {
            "family": self.family,
            "learning_rate": self.learning_rate,
            "tags": dict(self.tags),
            "evaluate": self.dataset is not None,
        }
        if with_path:
            body["checkpoint"] = str(self.checkpoint.expanduser().resolve())
        optional = {
            "kind": self.kind,
            "sweep": self.sweep,
            "dataset": self.dataset,
            "name": self.name,
            "training_run": self.training_run,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if self.training_log is not None and with_path:
            body["training_log"] = self.training_log.read_text(encoding="utf-8")
            body["training_log_filename"] = self.training_log.name
        return body


def check_local_inputs(request: CandidateRequest) -> None:
    """Refuse a missing training log early (a missing checkpoint is the server's call)."""
    if request.training_log is not None and not request.training_log.is_file():
        raise ClientError(
            "cannot submit",
            f"training log {request.training_log} does not exist",
            "check the --training-log path",
        )


def pack_folder(folder: Path, out_dir: Path) -> Path:
    """A tar.gz of ``folder``'s contents (paths relative to the folder, regular files only)."""
    archive = out_dir / f"{folder.name or 'checkpoint'}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return archive


def submit_candidate(
    client: TunegateClient,
    request: CandidateRequest,
    *,
    upload: bool | None = None,
    idempotency_key: str | None = None,
    on_upload: Callable[[], None] | None = None,
) -> CandidateSubmitted:
    """Register the candidate and queue its evaluation; returns the server's candidate record.

    ``upload``: ``None`` tries the path first and uploads when the server cannot see it (see
    the module docstring); ``True`` always uploads; ``False`` never does. Raises
    :class:`ClientError`.
    """
    check_local_inputs(request)
    key = idempotency_key or new_idempotency_key()
    if upload is not True:
        try:
            return client.register_candidate(request.metadata(with_path=True), key)
        except CheckpointNotVisibleError:
            if upload is False or not request.checkpoint.expanduser().is_dir():
                raise
    if not request.checkpoint.is_dir():
        raise ClientError(
            "cannot upload the checkpoint",
            f"{request.checkpoint} is not a folder here",
            "pass the checkpoint folder (adapter_config.json or config.json at its top)",
        )
    if on_upload is not None:
        on_upload()
    with tempfile.TemporaryDirectory(prefix="tunegate-upload-") as tmp:
        archive = pack_folder(request.checkpoint.expanduser(), Path(tmp))
        # its own key, derived from the first: the upload is another request body
        return client.upload_candidate(
            archive, request.metadata(with_path=False), f"{key}-upload", request.training_log
        )


@dataclass(frozen=True)
class Outcome:
    """A finished wait: the candidate's evaluation, its baseline's, and the decision."""

    evaluation: EvaluationDetail
    baseline: EvaluationDetail | None
    decision: DecisionOut | None


ProgressCallback = Callable[[EvaluationDetail, EvaluationDetail | None], None]


def wait_for_decision(
    client: TunegateClient,
    evaluation_id: int,
    *,
    timeout: float,
    on_progress: ProgressCallback | None = None,
    poll_seconds: float = 1.0,
    long_poll_seconds: float = 10.0,
) -> Outcome:
    """Poll the evaluation (and its baseline) until both end, then fetch the gate decision
    (:func:`wait_for_decisions` for one evaluation).

    Each wait is a long-poll (``wait_seconds``) on the one still running — the candidate's
    evaluation or the baseline's — so the end is seen within the server's check interval;
    a server that answers at once (busy, or one without long-polls) is polled every
    ``poll_seconds``. ``on_progress(evaluation, baseline)`` is called after every poll. The
    outcome's ``decision`` is ``None`` when either evaluation failed or was cancelled. Raises
    :class:`ClientError` on a timeout.
    """
    outcome = wait_for_decisions(
        client,
        [evaluation_id],
        timeout=timeout,
        on_progress=on_progress,
        poll_seconds=poll_seconds,
        long_poll_seconds=long_poll_seconds,
    )[0]
    if not is_finished(outcome.evaluation, outcome.baseline):
        raise timed_out(outcome.evaluation, timeout)
    return outcome


def wait_for_decisions(
    client: TunegateClient,
    evaluation_ids: Sequence[int],
    *,
    timeout: float,
    on_progress: ProgressCallback | None = None,
    poll_seconds: float = 1.0,
    long_poll_seconds: float = 10.0,
) -> list[Outcome]:
    """:func:`wait_for_decision` for several evaluations (a sweep submitted in one command).

    Each round reads every evaluation still open and each distinct baseline once, calls
    ``on_progress(evaluation, baseline)`` for each open one, and fetches the decision of each
    that ended. Then it long-polls *one* evaluation — a running one (candidate or baseline),
    else the first still open — so a sweep holds one of the server's few waiter slots, not
    one per candidate; the worker runs one evaluation (or one sweep group) at a time, so the
    running one is where the next change comes from.

    Returns one outcome per id, in order. When ``timeout`` passes, the evaluations still open
    are returned as last seen (``is_finished`` is false for them; :func:`timed_out` words
    the error) instead of raising, so the ones that ended keep their decisions.
    """
    deadline = time.monotonic() + timeout
    ended: dict[int, Outcome] = {}
    while True:
        evaluations = {i: client.get_evaluation(i) for i in evaluation_ids if i not in ended}
        shared = {b for e in evaluations.values() if (b := e.baseline_evaluation_id) is not None}
        baselines = {i: client.get_evaluation(i) for i in sorted(shared)}
        still_open: dict[int, Outcome] = {}
        for evaluation_id, evaluation in evaluations.items():
            baseline_id = evaluation.baseline_evaluation_id
            baseline = baselines[baseline_id] if baseline_id is not None else None
            if on_progress is not None:
                on_progress(evaluation, baseline)
            if is_finished(evaluation, baseline):
                decision = None
                if evaluation.status == "succeeded":
                    decision = client.decision_for_evaluation(evaluation_id)
                ended[evaluation_id] = Outcome(evaluation, baseline, decision)
            else:
                still_open[evaluation_id] = Outcome(evaluation, baseline, None)
        if not still_open or time.monotonic() >= deadline:
            return [ended.get(i) or still_open[i] for i in evaluation_ids]
        open_rows = [o.evaluation for o in still_open.values()]
        open_rows += [b for b in baselines.values() if b.status not in _ENDED]
        watched = next((e for e in open_rows if e.status == "running"), open_rows[0])
        wait = min(long_poll_seconds, 30.0, deadline - time.monotonic())  # the server: <= 30
        wait_for_change(client, watched, wait, poll_seconds)


_ENDED = frozenset({"succeeded", "failed", "cancelled"})


def timed_out(evaluation: EvaluationDetail, timeout: float) -> ClientError:
    """The error for a wait that ran out of time with ``evaluation`` (as last seen) open."""
    progress = evaluation.progress
    return ClientError(
        f"timed out after {timeout:g}s waiting for evaluation {evaluation.id}",
        f"it is {evaluation.status} ({progress.done}/{progress.total} examples)",
        f"raise --timeout, or check later with `tunegate eval show {evaluation.id}`",
    )


def wait_for_change(
    client: TunegateClient, seen: EvaluationDetail, wait: float, poll_seconds: float
) -> None:
    """Long-poll ``seen``'s evaluation; sleep ``poll_seconds`` when the server did not wait."""
    started = time.monotonic()
    fresh = client.get_evaluation(seen.id, wait_seconds=max(wait, 0.0))
    unchanged = (fresh.status, fresh.progress) == (seen.status, seen.progress)
    if unchanged and time.monotonic() - started < min(wait, poll_seconds) / 2:
        time.sleep(poll_seconds)


def is_finished(evaluation: EvaluationDetail, baseline: EvaluationDetail | None) -> bool:
    """Either one failed or was cancelled, or both succeeded (a decision can be made)."""
    statuses = [evaluation.status] + ([baseline.status] if baseline else [])
    if any(s in ("failed", "cancelled") for s in statuses):
        return True
    return all(s == "succeeded" for s in statuses)
