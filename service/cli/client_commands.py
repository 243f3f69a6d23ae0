"""Client commands: ``dataset``, ``family``, ``submit``, ``sweep``, ``promote``, ``history``,
``eval show``. They talk to the server over HTTP only (:mod:`service.cli.client`).

Every command takes ``--url``, ``--token``, ``--json`` (machine output on stdout, nothing
else there) and ``--debug`` (a traceback instead of the one-line error). Exit codes:
0 success / gate passed, 1 gate failed (regression: promotion refused), 2 error (bad input,
server unreachable, evaluation failed, timeout).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from service.cli import report
from service.cli.client import ClientError, TunegateClient
from service.cli.submission import CandidateRequest, submit_candidate, wait_for_decision
from service.cli.waiting import ProgressView, submit_exit_code

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2

out = Console()
err = Console(stderr=True)

UrlOpt = Annotated[
    str | None, typer.Option("--url", help="Server URL (TUNEGATE_URL; http://127.0.0.1:8080)")
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", help="Bearer token (TUNEGATE_TOKEN; else the local admin token)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks")]


@contextmanager
def session(url: str | None, token: str | None, debug: bool) -> Iterator[TunegateClient]:
    """A client whose failures end the command with one line on stderr and exit code 2."""
    try:
        with TunegateClient(url, token) as client:
            yield client
    except (typer.Exit, typer.Abort):
        raise
    except ClientError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"[red]error:[/red] unexpected {type(exc).__name__}: {exc} "
            "— rerun with --debug for the traceback",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ERROR) from None


def emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        human()


def read_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClientError(f"cannot read the {what}", f"{path}: {exc.strerror}") from exc


def parse_tags(tags: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise ClientError("bad --tag", f"{tag!r} is not key=value", "write --tag team=search")
        parsed[key] = value
    return parsed


# --- dataset / family ------------------------------------------------------------------------

dataset_app = typer.Typer(help="Versioned eval datasets.", no_args_is_help=True)
family_app = typer.Typer(help="Model families: base model, gate policy, aliases.")
eval_app = typer.Typer(help="Evaluations.", no_args_is_help=True)


@dataset_app.command("push")
def dataset_push(
    name: str,
    file: Annotated[Path, typer.Argument(help="JSONL file")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Push a JSONL dataset; the same content is the same version."""
    with session(url, token, debug) as client:
        try:
            body = file.read_bytes()
        except OSError as exc:
            raise ClientError("cannot read the dataset", f"{file}: {exc.strerror}") from exc
        v = client.push_dataset(name, body)
        emit(
            as_json,
            v,
            lambda: out.print(
                f"dataset {v['name']}@{v['version']} ({v['digest'][:12]}): "
                f"{v['n_examples']} examples ({v['n_in_domain']} in-domain, "
                f"{v['n_out_domain']} out-of-domain), {v['n_heldout']} held-out texts"
            ),
        )


@family_app.command("create")
def family_create(
    name: str,
    base: Annotated[str, typer.Option("--base", help="Base model: built-in name or folder")],
    policy: Annotated[Path | None, typer.Option(help="Gate policy (YAML or JSON)")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Create a family (with the default gate policy unless --policy is given)."""
    with session(url, token, debug) as client:
        text = read_file(policy, "policy") if policy else None
        family = client.create_family(name, base, text)
        emit(as_json, family, lambda: out.print(f"family {name} created (base {base})"))


@family_app.command("policy")
def family_policy(
    name: str,
    file: Annotated[Path, typer.Argument(help="Gate policy (YAML or JSON)")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Replace a family's gate policy (stored as a new policy version)."""
    with session(url, token, debug) as client:
        result = client.put_policy(name, read_file(file, "policy"))
        emit(as_json, result, lambda: out.print(f"policy of {name} updated"))


@family_app.command("show")
def family_show(
    name: str,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a family (base model, policy, aliases)."""
    with session(url, token, debug) as client:
        family = client.get_family(name)
        emit(as_json, family, lambda: out.print_json(data=family))


# --- submit ------------------------------------------------------------------------------


def submit(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder (LoRA adapter or full)")],
    family: Annotated[str, typer.Option("--family", help="Family name")],
    lr: Annotated[float, typer.Option("--lr", help="Learning rate it was trained with")],
    sweep: Annotated[str | None, typer.Option(help="Sweep name")] = None,
    kind: Annotated[str | None, typer.Option(help="lora | full (default: detected)")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Eval dataset NAME[@VERSION] (VERSION default latest)")
    ] = None,
    training_log: Annotated[
        Path | None, typer.Option(help="trainer_state.json or step JSONL")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value (repeatable)")] = None,
    name: Annotated[str | None, typer.Option(help="A display name")] = None,
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

    Exit codes: 0 pass (or queued, without --wait), 1 regression (promotion refused),
    2 error (bad input, server unreachable, evaluation failed, timeout).
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
        request = CandidateRequest(
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
        candidate = submit_candidate(
            client,
            request,
            upload=upload,
            on_upload=lambda: err.print("the server cannot see the path; uploading the folder"),
        )
        evaluation_id = candidate.get("evaluation_id")
        if not as_json:
            err.print(
                f"registered candidate {candidate.get('id')} ({candidate.get('kind')}, "
                f"lr {lr:g}) — evaluation {evaluation_id} queued",
                highlight=False,
            )
        if not wait or evaluation_id is None:
            emit(
                as_json,
                {"candidate": candidate},
                lambda: out.print(f"candidate {candidate.get('id')} evaluation {evaluation_id}"),
            )
            return
        view = ProgressView(err, enabled=not as_json)
        with view:
            outcome = wait_for_decision(
                client, evaluation_id, timeout=timeout, on_progress=view.update
            )
        code, error = submit_exit_code(outcome)
        title = f"tunegate: {family} candidate {candidate.get('id')} (lr {lr:g})"
        if junit is not None:
            report.write_text(
                junit,
                report.junit_xml(
                    outcome.decision,
                    suite=f"tunegate.{family}",
                    case_class=f"tunegate.{family}.candidate_{candidate.get('id')}",
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


def _print_outcome(
    decision: dict[str, Any] | None, candidate: dict[str, Any], error: str | None
) -> None:
    if decision is None:
        err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        return
    out.print(report.verdict_table(decision))
    colour = "green" if decision.get("verdict") == "pass" else "red"
    out.print(f"[{colour}]{decision.get('summary', decision.get('verdict'))}[/]", highlight=False)
    for line in report.diagnosis_lines(candidate):
        out.print(line, highlight=False)


# --- sweep / promote / history / eval -----------------------------------------------------


def sweep_command(
    family: str,
    sweep: str,
    chart: Annotated[Path | None, typer.Option(help="Write the sweep chart (PNG) here")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a learning-rate sweep: verdicts, labels and the recommended rate."""
    from service.cli.views import sweep_table

    with session(url, token, debug) as client:
        view = client.get_sweep(family, sweep)
        if chart is not None:
            from service.cli.chart import sweep_chart

            sweep_chart(view, chart)
        emit(as_json, view, lambda: _print_sweep(view, chart, sweep_table))


def _print_sweep(view: dict[str, Any], chart: Path | None, table: Callable[..., Table]) -> None:
    out.print(table(view))
    rate = view.get("recommended_rate")
    head = f"recommended rate: {rate:g}" if rate is not None else "no recommended rate"
    out.print(f"{head} — {view.get('recommendation_reason', '')}", highlight=False)
    if chart is not None:
        out.print(f"chart: {chart}")


def promote(
    family: str,
    candidate: str,
    alias: Annotated[str, typer.Option(help="Alias to move")] = "production",
    reason: Annotated[str | None, typer.Option(help="Why (recorded)")] = None,
    override: Annotated[bool, typer.Option(help="Promote without a passing gate")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Move an alias to a candidate (refused without a passing gate decision: exit 1)."""
    with session(url, token, debug) as client:
        try:
            record = client.promote(
                family, candidate, alias=alias, reason=reason, override=override
            )
        except ClientError as exc:
            if exc.error != "GateNotPassed":
                raise
            err.print(f"[red]promotion refused:[/red] {exc.why}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAIL) from None
        emit(
            as_json,
            record,
            lambda: out.print(f"{family}:{alias} → candidate {candidate}", highlight=False),
        )


def history(
    family: str,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The family's promotions, newest first."""
    from service.cli.views import records_table

    with session(url, token, debug) as client:
        records = client.promotions(family)
        emit(as_json, records, lambda: out.print(records_table(records, f"promotions of {family}")))


@eval_app.command("show")
def eval_show(
    evaluation_id: str,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """An evaluation's status, progress and aggregates."""
    from service.cli.views import evaluation_text

    with session(url, token, debug) as client:
        evaluation = client.get_evaluation(evaluation_id)

        def human() -> None:
            for part in evaluation_text(evaluation):
                out.print(part)

        emit(as_json, evaluation, human)


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``tunegate`` app."""
    app.add_typer(dataset_app, name="dataset")
    app.add_typer(family_app, name="family")
    app.add_typer(eval_app, name="eval")
    app.command("submit")(submit)
    app.command("sweep")(sweep_command)
    app.command("promote")(promote)
    app.command("history")(history)
