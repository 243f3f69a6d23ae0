"""``tunegate demo``: the whole loop on the embedded default, on a fresh machine.

1. start the embedded server (SQLite, in-process worker) on a free port, data in ``--out``;
2. push the packaged demo dataset and create the demo family with its gate policy;
3. fine-tune one LoRA per learning rate on the built-in SmolLM2-135M-Instruct, from the
   same initial adapter and the same data order, keeping each run's training log;
4. submit each one through the HTTP API with the same client code as ``tunegate submit``;
5. wait for the gate decisions, print the sweep (verdicts, labels, recommended rate) and
   write the chart.

Nothing is scripted: whatever the gate measures is what is printed.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from service.api.schemas.candidates import CandidateSubmitted
from service.api.schemas.sweeps import SweepOut
from service.cli.client import ClientError, TunegateClient
from service.cli.options import make_console
from service.cli.report import fmt
from service.cli.submission import (
    CandidateRequest,
    is_finished,
    submit_candidate,
    timed_out,
    wait_for_decisions,
)
from service.cli.waiting import ProgressView
from service.demo import DemoPlan

if TYPE_CHECKING:
    from rich.table import Table

    from service.api.schemas.evaluations import EvaluationDetail
    from service.settings import Settings

console = make_console()


def _settings(out: Path) -> Settings:
    from service.settings import Settings

    return Settings(
        data_dir=out,
        database_url=f"sqlite:///{out / 'tunegate.db'}",
        checkpoint_roots=[out / "checkpoints"],
        model_roots=[out / "models"],
        queue="inprocess",
    )


def _quiet_libraries() -> None:
    """Keep the demo's output to its own progress: no per-load bars or library notices."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _step(text: str) -> None:
    console.print(f"[bold cyan]▶[/] {text}", highlight=False)


def _train_and_submit(
    client: TunegateClient, base_dir: Path, out: Path, plan: DemoPlan
) -> list[CandidateSubmitted]:
    """Train each rate and submit it as soon as it is trained (as a CI job would)."""
    from service.demo import DATASET_NAME, FAMILY_NAME, SWEEP_NAME, training_pairs
    from service.demo.training import initial_adapter, rate_dir_name, train_rate

    pairs = training_pairs()
    root = out / "checkpoints" / SWEEP_NAME
    init = initial_adapter(base_dir, pairs, root / "init", plan.target_modules)
    submitted: list[CandidateSubmitted] = []
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        for rate in plan.rates:
            task = progress.add_task(f"fine-tune lr {rate:g}", total=plan.steps, note="steps")
            result = train_rate(
                base_dir,
                pairs,
                root / rate_dir_name(rate),
                rate=rate,
                steps=plan.steps,
                init_adapter=init,
                batch_size=plan.batch_size,
                warmup_steps=plan.warmup_steps,
                target_modules=plan.target_modules,
                on_step=_advance(progress, task),
            )
            request = CandidateRequest(
                checkpoint=result.adapter_dir,
                family=FAMILY_NAME,
                learning_rate=rate,
                kind="lora",
                sweep=SWEEP_NAME,
                dataset=DATASET_NAME,
                training_log=result.log_path,
                tags={"source": "tunegate-demo"},
                name=f"demo {rate_dir_name(rate)}",
            )
            candidate = submit_candidate(client, request, upload=None)
            submitted.append(candidate)
            progress.update(
                task,
                note=f"final loss {result.final_loss:.3g} → candidate {candidate.id}, "
                f"evaluation {candidate.evaluation_id}",
            )
    return submitted


def _advance(progress: Progress, task: TaskID) -> Callable[[int], None]:
    def update(steps: int) -> None:
        progress.update(task, completed=steps)

    return update


def _wait_all(client: TunegateClient, submitted: list[CandidateSubmitted], timeout: float) -> None:
    """Show every evaluation (and the shared baseline) until all are decided or failed:
    :func:`wait_for_decisions`, one long-poll at a time on the running evaluation."""
    labels: dict[int, str] = {}
    for candidate in submitted:
        if candidate.evaluation_id is None:  # the demo always asks for an evaluation
            raise ClientError("demo", f"candidate {candidate.id} has no evaluation")
        labels[candidate.evaluation_id] = f"lr {candidate.learning_rate or 0:g}"
    view = ProgressView(console)

    def show(evaluation: EvaluationDetail, baseline: EvaluationDetail | None) -> None:
        if baseline is not None:
            view.show("baseline", baseline)
        view.show(labels[evaluation.id], evaluation)

    with view:
        outcomes = wait_for_decisions(client, list(labels), timeout=timeout, on_progress=show)
    for outcome in outcomes:
        if not is_finished(outcome.evaluation, outcome.baseline):
            raise timed_out(outcome.evaluation, timeout)


def demo(
    out: Annotated[
        Path | None, typer.Option(help="Data dir for the server (default: a new temp dir)")
    ] = None,
    quick: Annotated[bool, typer.Option(help="A smaller, faster run (2 rates)")] = False,
    port: Annotated[int | None, typer.Option(help="Port (default: a free one)")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds the evaluations may take")] = 1800.0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks")] = False,
) -> None:
    """Run the main job end to end: serve, fine-tune a learning-rate sweep, gate it, chart it."""
    from service.cli.embedded import EmbeddedServer
    from service.cli.options import session
    from service.cli.views import sweep_table
    from service.demo import (
        DATASET_NAME,
        FAMILY_NAME,
        FULL,
        QUICK,
        SWEEP_NAME,
        eval_dataset,
        policy_text,
    )
    from service.engine.builtin import SMOLLM2, ensure_builtin, smollm2_package_dir

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    started = time.monotonic()
    plan = QUICK if quick else FULL
    out = (out or Path(tempfile.mkdtemp(prefix="tunegate-demo-"))).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(out)
    _step(f"data dir {out}")
    server = EmbeddedServer(settings, port=port)
    with session(None, None, debug):
        smollm2_package_dir()  # before anything starts: says what to install when absent
        server.start()
        try:
            _step(f"embedded server on {server.url} (SQLite, in-process worker)")
            with TunegateClient(server.url, server.admin_token) as client:
                version = client.push_dataset(DATASET_NAME, eval_dataset(plan))
                _step(
                    f"dataset {DATASET_NAME}@{version.version}: {version.n_in_domain} "
                    f"in-domain tickets, {version.n_out_domain} out-of-domain questions, "
                    f"{version.n_heldout} held-out texts"
                )
                client.create_family(FAMILY_NAME, SMOLLM2, policy_text())
                _step(f"family {FAMILY_NAME} (base {SMOLLM2}, policy service/demo/data)")
                _step(f"preparing {SMOLLM2} in {settings.resolved_data_dir / 'models'}")
                with contextlib.redirect_stderr(io.StringIO()):  # the GGUF reader's own bar
                    base_dir = ensure_builtin(SMOLLM2, settings.resolved_data_dir / "models")
                _step(
                    f"fine-tuning {len(plan.rates)} LoRA adapters, {plan.steps} steps each, "
                    f"rates {', '.join(f'{r:g}' for r in plan.rates)}"
                )
                submitted = _train_and_submit(client, base_dir, out, plan)
                _step("evaluating (the baseline once, then every candidate)")
                _wait_all(client, submitted, timeout)
                view = client.get_sweep(FAMILY_NAME, SWEEP_NAME)
                chart_path = out / "sweep.png"
                from service.cli.chart import sweep_chart

                sweep_chart(view, chart_path)
                summaries = {
                    row.candidate_id: client.get_decision(row.decision_id).summary
                    for row in view.rows
                    if row.decision_id is not None
                }
                _finish(view, summaries, sweep_table, chart_path, out, server.url, started)
        finally:
            server.stop()


def _finish(
    view: SweepOut,
    summaries: dict[int, str],
    table: Callable[[SweepOut], Table],
    chart: Path,
    out: Path,
    url: str,
    started: float,
) -> None:
    console.print(table(view))
    for row in view.rows:
        reasons = row.diagnosis.reasons if row.diagnosis is not None else []
        console.print(
            f"[bold]lr {fmt(row.learning_rate)}[/] ({row.label}): {row.label_reason or ''}",
            highlight=False,
        )
        console.print(f"  gate {summaries.get(row.candidate_id, '—')}", highlight=False)
        if reasons:
            console.print(f"  training log: {'; '.join(reasons)}", highlight=False)
    rate = view.recommended_rate
    head = f"recommended learning rate: {rate:g}" if rate is not None else "no recommended rate"
    console.print(f"[bold]{head}[/] — {view.recommendation_reason}", highlight=False)
    console.print(f"chart: {chart}", highlight=False)
    console.print(
        f"server data (SQLite, checkpoints, logs): {out} — browse it again with "
        f"`TUNEGATE_DATA_DIR={out} tunegate serve` (it was served at {url})",
        highlight=False,
    )
    console.print(f"demo finished in {time.monotonic() - started:.0f}s", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
