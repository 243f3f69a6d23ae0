"""What ``submit --wait`` shows while it waits, and the exit code it ends with."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from service.api.schemas.evaluations import EvaluationDetail
from service.cli.submission import Outcome


class ProgressView:
    """Two rich progress bars (baseline and candidate) fed by the server's progress."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def show(self, role: str, evaluation: EvaluationDetail, *, key: str | None = None) -> None:
        """Add or update the bar named ``role`` (one bar per ``key``, default the role) from
        an evaluation record."""
        key = key or role
        total = evaluation.progress.total or None
        done = evaluation.progress.done
        status = evaluation.status
        if evaluation.reused_from_id is not None:
            status += " (reused)"
        description = f"{role} evaluation {evaluation.id}"
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(description, total=total, status=status)
        self._progress.update(
            self._tasks[key], completed=done, total=total, status=status, description=description
        )

    def update(self, evaluation: EvaluationDetail, baseline: EvaluationDetail | None) -> None:
        """Called after each poll with the candidate's and the baseline's evaluation."""
        if baseline is not None:
            self.show("baseline", baseline)
        self.show("candidate", evaluation)


def submit_exit_code(outcome: Outcome) -> tuple[int, str | None]:
    """(exit code, error line): 0 pass, 1 gate failed, 2 evaluation failed / no decision."""
    if outcome.decision is not None:
        return (0 if outcome.decision.verdict == "pass" else 1), None
    for role, evaluation in (("baseline", outcome.baseline), ("candidate", outcome.evaluation)):
        if evaluation is not None and evaluation.status in ("failed", "cancelled"):
            reason = evaluation.error or "no reason recorded"
            return 2, (
                f"the {role} evaluation {evaluation.id} {evaluation.status}: "
                f"{reason} — see `tunegate eval show {evaluation.id}`"
            )
    return 2, "the evaluation ended without a gate decision"
