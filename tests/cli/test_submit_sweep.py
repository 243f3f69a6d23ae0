"""``tunegate submit A B --lr X --lr Y --wait``: a sweep registered and gated in one command,
through the installed entry point against a live server."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import LiveServer, run_cli


@pytest.fixture(scope="module")
def capitals_copy(live_server: LiveServer, capitals_adapter: Path) -> Path:
    """A lightly trained LoRA: it changes little, so it passes the test policy."""
    target = live_server.checkpoints / "capitals"
    if not target.exists():
        shutil.copytree(capitals_adapter, target)
    return target


def _sweep(live: LiveServer, *args: str) -> tuple[int, str, str]:
    result = run_cli(
        "submit",
        *args,
        *("--family", "tiny", "--dataset", "ds", "--wait", "--timeout", "500"),
        env=live.env(),
    )
    return result.returncode, result.stdout, result.stderr


def _get(live: LiveServer, path: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {live.token}"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=10) as api:
        response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _candidates(live: LiveServer, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _get(live, "/v1/candidates", family="tiny", limit=500, **params)
    return rows


def test_two_adapters_in_one_command_are_gated_together(
    live_server: LiveServer, capitals_copy: Path, looping_adapter: Path, tmp_path: Path
) -> None:
    junit, summary = tmp_path / "gate.xml", tmp_path / "summary.md"
    code, out, err = _sweep(
        live_server,
        *(str(capitals_copy), str(looping_adapter)),
        *("--lr", "1e-2", "--lr", "2e-2", "--sweep", "one-command"),
        *("--junit", str(junit), "--summary", str(summary)),
    )
    assert code == 1, out + err  # the looping adapter regressed; nothing errored
    registered = _candidates(live_server, sweep="one-command")
    assert sorted(c["learning_rate"] for c in registered) == [1e-2, 2e-2]
    by_path = {Path(c["checkpoint_path"]).name: c for c in registered}
    assert by_path["capitals"]["learning_rate"] == 1e-2
    assert by_path["looping"]["learning_rate"] == 2e-2
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        f"candidate {by_path['capitals']['id']} (lr 0.01)",
        f"candidate {by_path['looping']['id']} (lr 0.02)",
    ]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    assert cases[0].find("failure") is None
    assert cases[0].findtext("system-out", "").startswith("pass")
    failure = cases[1].find("failure")
    assert failure is not None
    assert "no_regression:repetition" in (failure.text or "")
    text = summary.read_text()
    assert "tunegate: tiny sweep one-command (2 candidates)" in text
    assert "❌ 1 of 2 failed — promotion refused" in text
    assert f"| 0.01 | {by_path['capitals']['id']} | ✅ pass |" in text
    # the looping adapter's label (read from the sweep view): degenerate, not underfit
    assert f"| 0.02 | {by_path['looping']['id']} | ❌ **fail** | collapse |" in text
    assert err.count("registered candidate") == 2
    assert "gate decision" in out  # each candidate's verdict table
    assert "tunegate: tiny sweep one-command (2 candidates)" in out  # the one-line-each table
    view = _get(live_server, "/v1/sweeps/tiny/one-command")
    looping = next(r for r in view["rows"] if r["candidate_id"] == by_path["looping"]["id"])
    assert looping["label"] == "collapse"
    assert looping["label_reason"].startswith("degenerate output: repetition rose from 0 to ")
    assert "no_regression:repetition" in looping["label_reason"]
    assert looping["repetition"] > 0.5
    assert view["recommended_rate"] != 2e-2


def test_mismatched_lr_count_registers_nothing(
    live_server: LiveServer, capitals_copy: Path, looping_adapter: Path
) -> None:
    before = len(_candidates(live_server))
    code, out, err = _sweep(
        live_server, str(capitals_copy), str(looping_adapter), "--lr", "1e-2", "--sweep", "short"
    )
    assert code == 2, out + err
    assert "2 checkpoint(s) but 1 --lr value(s)" in err
    assert "Traceback" not in err
    assert len(_candidates(live_server)) == before


def test_a_refused_checkpoint_is_named_and_the_other_still_gated(
    live_server: LiveServer, capitals_copy: Path, capitals_adapter: Path
) -> None:
    outside = capitals_adapter  # the test cache: outside the server's checkpoint roots
    code, out, err = _sweep(
        live_server,
        *(str(capitals_copy), str(outside)),
        *("--lr", "1e-2", "--lr", "3e-2", "--sweep", "refused", "--no-upload", "--json"),
    )
    assert code == 2, out + err
    assert f"{outside} (lr 0.03) not registered" in err
    assert "outside the allowed roots" in err
    first, second = json.loads(out)
    assert first["exit_code"] == 0
    assert first["decision"]["verdict"] == "pass"
    assert first["candidate"]["sweep"] == "refused"
    assert second["candidate"] is None
    assert second["checkpoint"] == str(outside)
    assert second["exit_code"] == 2
    assert "CheckpointNotVisible" in second["error"]
    assert [c["learning_rate"] for c in _candidates(live_server, sweep="refused")] == [1e-2]
