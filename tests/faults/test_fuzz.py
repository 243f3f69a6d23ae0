"""Schemathesis over /openapi.json with an admin token, against a live server, both databases.

A fixed seed and a time budget keep it short in CI (``benchmarks/faults`` runs it longer):
0 server errors, 0 responses that break their documented schema, 0 undocumented statuses.
Revoking tokens is left out, or the fuzzer would lock itself out with the admin token.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.live import LiveServer

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"


def fuzz(server: LiveServer, seconds: int, seed: int = 1) -> subprocess.CompletedProcess[str]:
    command = [
        SCHEMATHESIS, "run", f"{server.url}/openapi.json",
        "-H", f"Authorization: Bearer {server.token}",
        "-c", CHECKS, "--seed", str(seed), "--max-time", str(seconds),
        "--exclude-path", "/v1/tokens/{token_id}",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)


def test_fuzzing_finds_no_server_error_and_no_schema_violation(tmp_path: Path, db_url: str) -> None:
    if not Path(SCHEMATHESIS).exists():
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    with LiveServer(tmp_path / "data", db_url) as server:
        result = fuzz(server, seconds=30)
        errors = server.errors_logged()
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary
    assert errors == "", errors[-3000:]
