"""What every client command shares: the common options, one-line errors, JSON output.

Exit codes: 0 success / gate passed, 1 gate failed (regression: promotion refused),
2 error (bad input, server unreachable, evaluation failed, timeout).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic_core import to_json
from rich.console import Console
from rich.markup import escape

from service.cli.client import ClientError, TunegateClient
from service.errors import TunegateError

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def make_console(*, stderr: bool = False) -> Console:
    """A console; when output is a log (CI, a pipe) tables get 160 columns, not 80."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=160)
    return console


out = make_console()
err = make_console(stderr=True)

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
    except (OSError, TunegateError) as exc:
        if debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
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


def emit(as_json: bool, data: object, human: Callable[[], None]) -> None:
    """Print ``data`` as JSON (``--json``: response models, lists and dicts of them), else
    call ``human``."""
    if as_json:
        typer.echo(to_json(data, indent=2).decode("utf-8"))
    else:
        human()


def read_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClientError(f"cannot read the {what}", f"{path}: {exc.strerror}") from exc
