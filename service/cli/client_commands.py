"""Client commands: ``dataset``, ``family``, ``submit``, ``sweep``, ``promote``, ``history``,
``eval show``. They talk to the server over HTTP only (:mod:`service.cli.client`).

Every command takes ``--url``, ``--token``, ``--json`` (machine output on stdout, nothing
else there) and ``--debug`` (a traceback instead of the one-line error). Exit codes:
0 success / gate passed, 1 gate failed (regression: promotion refused), 2 error (bad input,
server unreachable, evaluation failed, timeout).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from service.alias_names import PRODUCTION
from service.api.schemas.sweeps import SweepOut
from service.cli.client import ClientError, GateNotPassedError
from service.cli.options import (
    EXIT_FAIL,
    DebugOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    emit,
    err,
    out,
    read_file,
    session,
)
from service.cli.report_command import report
from service.cli.submit_command import submit
from service.errors import InvalidDataset
from service.jsontypes import JSONObject

if TYPE_CHECKING:
    from service.dataset_tables import TableLines

# --- dataset / family ------------------------------------------------------------------------

dataset_app = typer.Typer(help="Versioned eval datasets.", no_args_is_help=True)
family_app = typer.Typer(help="Model families: base model, gate policy, aliases.")
eval_app = typer.Typer(help="Evaluations.", no_args_is_help=True)


def _pairs(option: str, items: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            raise ClientError(f"bad {option} {item!r}", f"expected {option} FIELD=VALUE")
        pairs[key.strip()] = value
    return pairs


def _dataset_body(
    file: Path, maps: list[str], sets: list[str], generation: JSONObject
) -> Path | TableLines:
    """The JSONL to push: the file itself (sent as it is read), or the table it maps to
    (made and checked row by row as it is sent)."""
    from service.dataset_tables import TABLE_SUFFIXES, open_table

    if file.suffix.lower() not in TABLE_SUFFIXES:
        if maps or sets or generation:
            raise ClientError(
                "cannot push the dataset",
                "--map, --set, --system and --max-new-tokens apply to .parquet and .csv files",
                "put these in the JSONL itself (the generation record and the example fields)",
            )
        try:
            with file.open("rb"):
                return file
        except OSError as exc:
            raise ClientError("cannot read the dataset", f"{file}: {exc.strerror}") from exc
    if not file.is_file():
        raise ClientError("cannot read the dataset", f"{file} is not a file")
    try:
        table = open_table(file, _pairs("--map", maps), _pairs("--set", sets), generation)
    except InvalidDataset as exc:
        raise ClientError(f"{file.name} refused", exc.detail) from exc
    if table.ignored_columns:
        err.print(f"columns not used: {', '.join(table.ignored_columns)}", highlight=False)
    return table


@dataset_app.command("push")
def dataset_push(
    name: str,
    file: Annotated[Path, typer.Argument(help="JSONL, Parquet (.parquet) or CSV (.csv) file")],
    maps: Annotated[
        list[str] | None,
        typer.Option(
            "--map", help="Table only: FIELD=COLUMN, e.g. --map input=question (repeatable)"
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Table only: FIELD=VALUE for every row, e.g. --set domain=out"),
    ] = None,
    system: Annotated[
        str | None, typer.Option(help="Table only: the dataset-wide system prompt")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Table only: generation length (default 64)")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Push a dataset; the same content is the same version, whatever the file format."""
    generation: JSONObject = {}
    if system is not None:
        generation["system"] = system
    if max_new_tokens is not None:
        generation["max_new_tokens"] = max_new_tokens
    with session(url, token, debug) as client:
        body = _dataset_body(file, maps or [], sets or [], generation)
        try:
            v = client.push_dataset(name, body)
        except InvalidDataset as exc:  # a bad row of a table, found while it was sent
            raise ClientError(f"{file.name} refused", exc.detail) from exc
        emit(
            as_json,
            v,
            lambda: out.print(
                f"dataset {v.name}@{v.version} ({v.digest[:12]}): "
                f"{v.n_examples} examples ({v.n_in_domain} in-domain, "
                f"{v.n_out_domain} out-of-domain), {v.n_heldout} held-out texts"
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
        emit(as_json, family, lambda: out.print_json(family.model_dump_json()))


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


def _print_sweep(view: SweepOut, chart: Path | None, table: Callable[[SweepOut], Table]) -> None:
    out.print(table(view))
    rate = view.recommended_rate
    head = f"recommended rate: {rate:g}" if rate is not None else "no recommended rate"
    out.print(f"{head} — {view.recommendation_reason}", highlight=False)
    if chart is not None:
        out.print(f"chart: {chart}")


def promote(
    family: str,
    candidate: Annotated[int, typer.Argument(help="Candidate id")],
    alias: Annotated[str, typer.Option(help="Alias to move")] = PRODUCTION,
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
        except GateNotPassedError as exc:
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
    evaluation_id: Annotated[int, typer.Argument(help="Evaluation id")],
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


@eval_app.command("rescore")
def eval_rescore(
    evaluation_ids: Annotated[list[int], typer.Argument(help="Evaluation ids (one or more)")],
    evaluator: Annotated[
        list[str] | None,
        typer.Option("--evaluator", "-e", help="Score with this set from now on (repeat)"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is scored")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score evaluations' stored outputs again: new or changed evaluators, no generation.

    Several ids are queued in one request, all or none, and scored as one job."""
    import time

    from service.cli.views import evaluation_text

    with session(url, token, debug) as client:
        if len(evaluation_ids) == 1:
            evaluations = [client.rescore(evaluation_ids[0], evaluator or None)]
        else:
            evaluations = client.rescore_many(evaluation_ids, evaluator or None)
        while wait and any(e.status in ("queued", "running") for e in evaluations):
            time.sleep(0.2)
            evaluations = [
                client.get_evaluation(e.id) if e.status in ("queued", "running") else e
                for e in evaluations
            ]

        def human() -> None:
            for evaluation in evaluations:
                for part in evaluation_text(evaluation):
                    out.print(part)

        emit(as_json, evaluations[0] if len(evaluations) == 1 else evaluations, human)


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``tunegate`` app."""
    app.add_typer(dataset_app, name="dataset")
    app.add_typer(family_app, name="family")
    app.add_typer(eval_app, name="eval")
    app.command("submit")(submit)
    app.command("report")(report)
    app.command("sweep")(sweep_command)
    app.command("promote")(promote)
    app.command("history")(history)
