"""Entry point of the ``tunegate`` command (typer + rich).

Server-side commands (``serve``, ``worker``, ``token create``) call the domain
directly; every client command talks to the server over HTTP only, exactly as CI
and dashboards do.
"""

from __future__ import annotations

import sys

import typer

from service.cli import server

app = typer.Typer(
    name="tunegate",
    help="A regression gate for fine-tuned language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
server.register(app)


def _register_optional() -> None:
    """Client command groups live in their own modules; register those present."""
    import importlib

    for module in ("service.cli.client_commands", "service.cli.demo"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


_register_optional()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
