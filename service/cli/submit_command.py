"""``tunegate submit``: register a candidate, queue its evaluation and, with ``--wait``,
gate it — the command a CI job runs after each fine-tune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.api.schemas.candidates import CandidateSubmitted
from service.api.schemas.decisions import DecisionOut
from service.cli import report
from service.cli.client import ClientError
from service.cli.options import (
    EXIT_ERROR,
    DebugOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    emit,
    err,
    out,
    session,
)
from service.cli.submission import CandidateRequest, submit_candidate, wait_for_decision
from service.cli.sweep_submit import submit_sweep
from service.cli.waiting import ProgressView, submit_exit_code


def parse_tags(tags: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise ClientError("bad --tag", f"{tag!r} is not key=value", "write --tag team=search")
        parsed[key] = value
    return parsed


def submit(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            help="Checkpoint folder(s) (LoRA adapter or full); several: a sweep in one command",
            metavar="CHECKPOINT",
        ),
    ],
    family: Annotated[str, typer.Option("--family", help="Family name")],
    lrs: Annotated[
        list[float],
        typer.Option("--lr", help="Learning rate it was trained with (one per checkpoint)"),
    ],
    sweep: Annotated[str | None, typer.Option(help="Sweep name")] = None,
    kind: Annotated[str | None, typer.Option(help="lora | full (default: detected)")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Eval dataset NAME[@VERSION] (VERSION default latest)")
    ] = None,
    training_logs: Annotated[
        list[Path] | None,
        typer.Option(
            "--training-log", help="trainer_state.json or step JSONL (none, or one per checkpoint)"
        ),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value (repeatable)")] = None,
    name: Annotated[str | None, typer.Option(help="A display name (one checkpoint only)")] = None,
    upload: Annotated[
        bool | None,
        typer.Option(
            "--upload/--no-upload",
            help="Upload the folder (default: only when the server cannot see the path)",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the gate decision")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait may take")] = 3600.0,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here (--wait)")] = None,
    summary: Annotated[
        Path | None, typer.Option(help="Append a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Register a candidate and queue its evaluation; with --wait, gate it.

    Several checkpoints (a sweep: one --lr each, in order) are registered and gated in one
    command; a checkpoint the server refuses is reported and the others still go.

    Exit codes: 0 pass (or queued, without --wait), 1 regression (promotion refused),
    2 error (bad input, server unreachable, evaluation failed, timeout); for several
    checkpoints 2 if any has an error, else 1 if any regressed.
    """
    if kind not in (None, "lora", "full"):
        err.print(f"[red]error:[/red] --kind must be lora or full, not {kind!r}")
        raise typer.Exit(EXIT_ERROR)
    if wait and dataset is None:
        err.print(
            "[red]error:[/red] cannot wait for a gate decision: no evaluation without a "
            "dataset — pass --dataset NAME[@VERSION]"
        )
        raise typer.Exit(EXIT_ERROR)
    with session(url, token, debug) as client:
        requests = [
            CandidateRequest(
                checkpoint=checkpoint,
                family=family,
                learning_rate=lr,
                kind=kind,
                sweep=sweep,
                dataset=dataset,
                training_log=training_log,
                tags=parse_tags(tag or []),
                name=name,
            )
            for checkpoint, lr, training_log in _per_checkpoint(
                checkpoints, lrs, training_logs or [], name
            )
        ]
        if len(requests) > 1:
            raise typer.Exit(
                submit_sweep(
                    client,
                    requests,
                    upload=upload,
                    wait=wait,
                    timeout=timeout,
                    junit=junit,
                    summary=summary,
                    as_json=as_json,
                )
            )
        (request,) = requests
        lr = request.learning_rate
        candidate = submit_candidate(
            client,
            request,
            upload=upload,
            on_upload=lambda: err.print("the server cannot see the path; uploading the folder"),
        )
        evaluation_id = candidate.evaluation_id
        if not as_json:
            err.print(
                f"registered candidate {candidate.id} ({candidate.kind}, "
                f"lr {lr:g}) — evaluation {evaluation_id} queued",
                highlight=False,
            )
        if not wait or evaluation_id is None:
            emit(
                as_json,
                {"candidate": candidate},
                lambda: out.print(f"candidate {candidate.id} evaluation {evaluation_id}"),
            )
            return
        view = ProgressView(err, enabled=not as_json)
        with view:
            outcome = wait_for_decision(
                client, evaluation_id, timeout=timeout, on_progress=view.update
            )
        code, error = submit_exit_code(outcome)
        title = f"tunegate: {family} candidate {candidate.id} (lr {lr:g})"
        if junit is not None:
            report.write_text(
                junit,
                report.junit_xml(
                    outcome.decision,
                    suite=f"tunegate.{family}",
                    case_class=f"tunegate.{family}.candidate_{candidate.id}",
                    error=error,
                ),
            )
        if summary is not None:
            report.append_text(
                summary,
                report.markdown_summary(
                    outcome.decision, title=title, candidate=candidate, error=error
                ),
            )
        data = {
            "candidate": candidate,
            "evaluation": outcome.evaluation,
            "baseline": outcome.baseline,
            "decision": outcome.decision,
            "exit_code": code,
            "error": error,
        }
        emit(as_json, data, lambda: _print_outcome(outcome.decision, candidate, error))
        raise typer.Exit(code)


def _per_checkpoint(
    checkpoints: list[Path], lrs: list[float], training_logs: list[Path], name: str | None
) -> list[tuple[Path, float, Path | None]]:
    """(checkpoint, lr, training log) per checkpoint; raises :class:`ClientError` when the
    repeated options do not pair up with the checkpoints (before anything is sent)."""
    count = len(checkpoints)
    if len(lrs) != count:
        raise ClientError(
            "cannot submit",
            f"{count} checkpoint(s) but {len(lrs)} --lr value(s)",
            "pass one --lr per checkpoint, in the same order",
        )
    if training_logs and len(training_logs) != count:
        raise ClientError(
            "cannot submit",
            f"{count} checkpoint(s) but {len(training_logs)} --training-log value(s)",
            "pass no --training-log, or one per checkpoint in the same order",
        )
    if name is not None and count > 1:
        raise ClientError(
            "cannot submit",
            f"--name names one candidate, and {count} checkpoints were given",
            "leave --name out (each candidate is shown by its learning rate)",
        )
    logs: list[Path | None] = list(training_logs) if training_logs else [None] * count
    return list(zip(checkpoints, lrs, logs, strict=True))


def _print_outcome(
    decision: DecisionOut | None, candidate: CandidateSubmitted, error: str | None
) -> None:
    if decision is None:
        err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        return
    out.print(report.verdict_table(decision))
    colour = "green" if decision.verdict == "pass" else "red"
    out.print(f"[{colour}]{decision.summary}[/]", highlight=False)
    for line in report.diagnosis_lines(candidate):
        out.print(line, highlight=False)
