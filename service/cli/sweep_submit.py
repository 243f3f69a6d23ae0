"""``tunegate submit`` with several checkpoints: a learning-rate sweep in one command.

``tunegate submit A B C --lr 1e-4 --lr 3e-4 --lr 1e-3 --sweep w47 --dataset D --wait``
registers the three candidates and gates them in one process — one start-up, one progress
view, one exit code — instead of one ``submit`` per checkpoint.

What happens when one checkpoint is refused:

* a *local* check fails (a missing ``--training-log``, counts that do not match): nothing
  is registered — the command stops before its first request;
* the *server* refuses one (outside its checkpoint roots, not a checkpoint, ...): that one
  is reported with its path and the server's reason, the others are registered and, with
  ``--wait``, gated as usual, and the command exits 2. A server that cannot be reached
  stops the command at once (the others would fail the same way).

Registrations go out one after another, each through :func:`submit_candidate` with its own
``Idempotency-Key`` and path-or-upload fallback. A thread pool was measured and is not
worth it: against the embedded server four registrations by path take 0.05 s in a row and
0.08 s from four threads (each is ~12 ms of hashing and one SQLite write, which do not
overlap), while in order the candidate ids follow the command line. What one command saves
is the start-up of N processes: four adapters registered in 1.15 s by one command, 4.8 s by
four. Waiting is :func:`wait_for_decisions`: one long-poll at a time.

Exit code: 2 if any candidate has an error (refused, evaluation failed, timed out), else 1 if
any gate failed, else 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from service.api.schemas.candidates import CandidateSubmitted
from service.api.schemas.evaluations import EvaluationDetail
from service.cli import report
from service.cli.client import ClientError, ServerUnreachableError, TunegateClient
from service.cli.options import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, emit, err, out
from service.cli.submission import (
    CandidateRequest,
    Outcome,
    check_local_inputs,
    is_finished,
    submit_candidate,
    timed_out,
    wait_for_decisions,
)
from service.cli.views import LABEL_STYLE
from service.cli.waiting import ProgressView, submit_exit_code


@dataclass(frozen=True)
class Registration:
    """One checkpoint of the command: its candidate, or why the server refused it."""

    request: CandidateRequest
    candidate: CandidateSubmitted | None
    refused: str | None = None

    @property
    def name(self) -> str:
        lr = f"lr {self.request.learning_rate:g}"
        if self.candidate is None:
            return f"{self.request.checkpoint} ({lr})"
        return f"candidate {self.candidate.id} ({lr})"


@dataclass(frozen=True)
class Gated:
    """A registration after the wait: its outcome (none when refused), exit code and error."""

    registration: Registration
    outcome: Outcome | None
    code: int
    error: str | None
    label: str | None = None

    def result(self) -> report.CandidateResult:
        candidate = self.registration.candidate
        return report.CandidateResult(
            name=self.registration.name,
            learning_rate=self.registration.request.learning_rate,
            candidate_id=candidate.id if candidate is not None else None,
            decision=self.outcome.decision if self.outcome is not None else None,
            error=self.error,
            label=self.label,
        )

    def json(self) -> dict[str, object]:
        """Today's single-submit ``--json`` object, with the checkpoint and the label."""
        outcome = self.outcome
        return {
            "checkpoint": str(self.registration.request.checkpoint),
            "candidate": self.registration.candidate,
            "evaluation": outcome.evaluation if outcome is not None else None,
            "baseline": outcome.baseline if outcome is not None else None,
            "decision": outcome.decision if outcome is not None else None,
            "label": self.label,
            "exit_code": self.code,
            "error": self.error,
        }


def register_all(
    client: TunegateClient,
    requests: Sequence[CandidateRequest],
    *,
    upload: bool | None,
    announce: bool = True,
) -> list[Registration]:
    """Register every checkpoint, in order (see the module docstring for refusals).

    Raises :class:`ClientError` before any request when a local check fails, and
    :class:`ServerUnreachableError` when the server cannot be reached.
    """
    for request in requests:
        check_local_inputs(request)
        if upload is True and not request.checkpoint.expanduser().is_dir():
            raise ClientError(
                "cannot upload the checkpoints",
                f"{request.checkpoint} is not a folder here; nothing was registered",
                "pass checkpoint folders (adapter_config.json or config.json at their top)",
            )
    registrations = []
    for request in requests:
        try:
            candidate = submit_candidate(
                client, request, upload=upload, on_upload=_uploading(request)
            )
        except ServerUnreachableError:
            raise
        except ClientError as exc:
            registration = Registration(request, None, exc.line())
            err.print(
                f"[red]error:[/red] {escape(registration.name)} not registered: "
                f"{escape(exc.line())}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            registration = Registration(request, candidate)
            if announce:
                err.print(
                    f"registered candidate {candidate.id} ({candidate.kind}, "
                    f"lr {request.learning_rate:g}) — evaluation {candidate.evaluation_id} "
                    "queued",
                    highlight=False,
                )
        registrations.append(registration)
    return registrations


def _uploading(request: CandidateRequest) -> Callable[[], None]:
    def say() -> None:
        err.print(f"the server cannot see {request.checkpoint}; uploading the folder", markup=False)

    return say


def gate_all(
    client: TunegateClient, registrations: Sequence[Registration], *, timeout: float, view: bool
) -> list[Gated]:
    """Wait for every registered candidate's decision under one progress view."""
    roles: dict[int, str] = {}  # evaluation id -> the candidate's name
    for registration in registrations:
        candidate = registration.candidate
        if candidate is not None and candidate.evaluation_id is not None:
            roles[candidate.evaluation_id] = registration.name
    progress = ProgressView(err, enabled=view)

    def show(evaluation: EvaluationDetail, baseline: EvaluationDetail | None) -> None:
        if baseline is not None:
            progress.show("baseline", baseline, key=f"baseline {baseline.id}")
        progress.show(roles[evaluation.id], evaluation, key=str(evaluation.id))

    with progress:
        outcomes = wait_for_decisions(client, list(roles), timeout=timeout, on_progress=show)
    by_evaluation = dict(zip(roles, outcomes, strict=True))
    return [_gated(r, by_evaluation, timeout) for r in registrations]


def _gated(registration: Registration, outcomes: dict[int, Outcome], timeout: float) -> Gated:
    candidate = registration.candidate
    evaluation_id = candidate.evaluation_id if candidate is not None else None
    outcome = outcomes.get(evaluation_id) if evaluation_id is not None else None
    if outcome is None:
        why = registration.refused or "registered without an evaluation"
        return Gated(registration, None, EXIT_ERROR, why)
    if not is_finished(outcome.evaluation, outcome.baseline):
        return Gated(
            registration, outcome, EXIT_ERROR, timed_out(outcome.evaluation, timeout).line()
        )
    return Gated(registration, outcome, *submit_exit_code(outcome))


def with_labels(client: TunegateClient, gated: list[Gated], family: str, sweep: str) -> list[Gated]:
    """Each candidate's sweep label (good, forgetting, underfit, collapse) from the sweep view.

    The label is shown, never gated on: when the view cannot be read, a warning says so and
    the candidates keep no label.
    """
    try:
        view = client.get_sweep(family, sweep)
    except ClientError as exc:
        err.print(
            f"[yellow]warning:[/yellow] no sweep labels: {escape(exc.line())}", highlight=False
        )
        return gated
    labels: dict[int, str] = {}
    for row in view.rows:
        if row.label is not None:
            labels |= dict.fromkeys([row.candidate_id, *row.repeats], row.label)
    return [
        replace(g, label=labels.get(c.id)) if (c := g.registration.candidate) else g for g in gated
    ]


def overall_exit_code(codes: Sequence[int]) -> int:
    """2 if any error, else 1 if any gate failed, else 0."""
    if EXIT_ERROR in codes:
        return EXIT_ERROR
    return EXIT_FAIL if EXIT_FAIL in codes else EXIT_PASS


def submit_sweep(
    client: TunegateClient,
    requests: Sequence[CandidateRequest],
    *,
    upload: bool | None,
    wait: bool,
    timeout: float,
    junit: Path | None,
    summary: Path | None,
    as_json: bool,
) -> int:
    """Register, and with ``wait`` gate, several checkpoints; print and write the reports.

    Returns the exit code (see the module docstring).
    """
    registrations = register_all(client, requests, upload=upload, announce=not as_json)
    if not wait:
        codes = [EXIT_ERROR if r.candidate is None else EXIT_PASS for r in registrations]
        queued = [
            {"checkpoint": str(r.request.checkpoint), "candidate": r.candidate, "error": r.refused}
            for r in registrations
        ]
        emit(as_json, queued, lambda: _print_queued(registrations))
        return overall_exit_code(codes)
    gated = gate_all(client, registrations, timeout=timeout, view=not as_json)
    family, sweep = requests[0].family, requests[0].sweep
    if sweep is not None and any(g.outcome and g.outcome.decision for g in gated):
        gated = with_labels(client, gated, family, sweep)
    results = [g.result() for g in gated]
    title = f"tunegate: {family}" + (f" sweep {sweep}" if sweep else "")
    title += f" ({len(results)} candidates)"
    if junit is not None:
        case_class = f"tunegate.{family}.{sweep or 'submit'}"
        report.write_text(
            junit,
            report.junit_candidates_xml(results, suite=f"tunegate.{family}", case_class=case_class),
        )
    if summary is not None:
        report.append_text(summary, report.markdown_candidates(results, title=title))
    emit(as_json, [g.json() for g in gated], lambda: _print_all(gated, results, title))
    return overall_exit_code([g.code for g in gated])


def _print_queued(registrations: Sequence[Registration]) -> None:
    for registration in registrations:
        if (candidate := registration.candidate) is not None:
            out.print(f"candidate {candidate.id} evaluation {candidate.evaluation_id}")


def _print_all(
    gated: Sequence[Gated], results: Sequence[report.CandidateResult], title: str
) -> None:
    for item in gated:
        decision = item.outcome.decision if item.outcome is not None else None
        name = item.registration.name
        if decision is None or item.error is not None:
            err.print(
                f"[red]error:[/red] {escape(f'{name}: {item.error}')}",
                highlight=False,
                soft_wrap=True,
            )
            continue
        out.print(
            f"[bold]{escape(name)}[/] — {escape(str(item.registration.request.checkpoint))}",
            highlight=False,
        )
        out.print(report.verdict_table(decision))
        colour = "green" if decision.verdict == "pass" else "red"
        out.print(f"[{colour}]{decision.summary}[/]", highlight=False)
        for line in report.diagnosis_lines(item.registration.candidate):
            out.print(line, highlight=False)
    out.print(candidates_table(results, title))


_VERDICT_STYLE = {"pass": "green", "fail": "bold red", "error": "bold red"}


def candidates_table(results: Sequence[report.CandidateResult], title: str) -> Table:
    """One line per candidate: learning rate, candidate, verdict, label, summary or error."""
    table = Table(title=title)
    for column, justify in (("lr", "right"), ("candidate", "right"), ("verdict", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("label")
    table.add_column("summary", overflow="fold")
    for result in results:
        label = result.label or "—"
        decision = result.decision
        text = result.error or (decision.summary if decision is not None else "")
        table.add_row(
            report.fmt(result.learning_rate, 3),
            "—" if result.candidate_id is None else str(result.candidate_id),
            f"[{_VERDICT_STYLE[result.verdict]}]{result.verdict}[/]",
            f"[{LABEL_STYLE.get(label, 'white')}]{label}[/]",
            escape(text),
        )
    return table
