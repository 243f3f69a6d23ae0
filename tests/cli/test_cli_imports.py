"""The CLI is a thin HTTP client: starting it loads no database, web-server or model code.

Every ``tunegate submit`` in a CI fleet pays the CLI's start-up; the response schemas it
shares with the API keep their database and service imports for type checking only and
import what their ``of`` constructors call when the server calls them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "fastapi", "starlette", "torch", "transformers", "service.db.models")


def test_starting_the_cli_imports_no_database_server_or_model_code() -> None:
    code = (
        "import json, sys; import service.cli.main; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []


def test_the_shared_schemas_still_build_rows_on_the_server_side() -> None:
    # the lazily imported names resolve: every response model is fully defined
    from pydantic import BaseModel

    from service.api.app import create_app  # noqa: F401  (imports every router and schema)
    from service.api.schemas import candidates, datasets, evaluations, families, promotions

    built = 0
    for module in (candidates, datasets, evaluations, families, promotions):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
            ):
                value.model_rebuild(force=True, raise_errors=True)
                assert value.__pydantic_complete__, value
                built += 1
    assert built >= 15
