"""Server-side commands: ``serve``, ``worker``, ``token create``, ``migrate``."""

from __future__ import annotations

import logging
import os

import typer
from rich.console import Console

from service.settings import get_settings

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(migrate)
    token_app = typer.Typer(help="API tokens (stored hashed; printed once).", no_args_is_help=True)
    token_app.command("create")(token_create)
    app.add_typer(token_app, name="token")


def serve(
    host: str = typer.Option(None, help="Bind address (default TUNEGATE_HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="Port (default TUNEGATE_PORT, 8080)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Start the API (schema brought to head on start; in-process worker by default)."""
    from service.api.app import create_app
    from service.cli.embedded import uvicorn_server

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = get_settings()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    console.print(
        f"tunegate serving on http://{host or settings.host}:{port or settings.port} "
        f"(database {settings.sqlalchemy_url.split('@')[-1]}, queue {settings.queue}, "
        f"data {settings.resolved_data_dir})"
    )
    server = uvicorn_server(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=log_level,
    )
    try:
        server.run()
    except KeyboardInterrupt:  # a second Ctrl-C (as uvicorn.run)
        pass
    if not server.started:  # could not bind, or the lifespan failed (as uvicorn.run)
        raise typer.Exit(3)


def migrate() -> None:
    """Bring the configured database to the head revision (Alembic)."""
    from service.db.migrate import upgrade_to_head

    upgrade_to_head(get_settings().sqlalchemy_url)
    console.print("database at head")


def token_create(
    scope: str = typer.Option(..., help="read | submit | promote | admin"),
    name: str = typer.Option("cli", help="A label for the token"),
) -> None:
    """Create an API token in the configured database and print it (once)."""
    from service.auth import create_token
    from service.db.migrate import upgrade_to_head
    from service.db.session import make_engine, make_sessionmaker, unit_of_work
    from service.errors import TunegateError

    settings = get_settings()
    upgrade_to_head(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            token = create_token(session, scope=scope, name=name)
    except TunegateError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    typer.echo(token)
