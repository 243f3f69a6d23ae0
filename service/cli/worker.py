"""``tunegate worker``: a Celery worker that runs queued evaluations (the ``workers`` extra)."""

from __future__ import annotations

import logging
import os

import typer
from rich.console import Console

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    loglevel: str = typer.Option("info", "--loglevel", "-l", help="Celery log level"),
    queue: str | None = typer.Option(
        None, "--queue", "-Q", help="Queue to consume (default TUNEGATE_CELERY_QUEUE, tunegate)"
    ),
) -> None:
    """Start a Celery worker that runs queued evaluations, one at a time, models kept loaded."""
    try:
        import celery  # noqa: F401  (the workers extra; imported here to name what is missing)
    except ModuleNotFoundError as exc:
        console.print(
            "[red]error:[/red] `tunegate worker` needs Celery: pip install 'tunegate[workers]'"
        )
        raise typer.Exit(2) from exc
    # imported here: Celery and the job's torch are not paid for by `tunegate --help`
    from service.worker.celery_app import run_worker

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    code = run_worker(loglevel=loglevel, queue=queue)
    if code:
        raise typer.Exit(code)
