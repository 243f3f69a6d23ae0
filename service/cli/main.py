"""Entry point of the ``tunegate`` command (typer + rich).

Server-side commands (``serve``, ``worker``, ``token create``) call the domain
directly; every client command talks to the server over HTTP only, exactly as CI
and dashboards do.
"""

from __future__ import annotations

import sys

import typer

from service.cli import client_commands, demo, server, worker

app = typer.Typer(
    name="tunegate",
    help="A regression gate for fine-tuned language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for module in (server, worker, client_commands, demo):
    module.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
