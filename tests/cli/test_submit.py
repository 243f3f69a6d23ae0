"""``tunegate submit --wait`` through the installed entry point against a live server."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx

from service.cli.embedded import free_port
from tests.adapters import trained_adapter
from tests.cli.conftest import TUNEGATE, LiveServer, run_cli

N_RULES = 3  # TEST_POLICY


def _submit(live: LiveServer, checkpoint: Path, *extra: str) -> tuple[int, str, str]:
    result = run_cli(
        "submit",
        str(checkpoint),
        "--family",
        "tiny",
        "--lr",
        "1e-4",
        "--dataset",
        "ds",
        "--wait",
        "--timeout",
        "500",
        *extra,
        env=live.env(),
    )
    return result.returncode, result.stdout, result.stderr


def test_unchanged_model_passes_with_exit_0(
    live_server: LiveServer, full_copy: Path, tmp_path: Path
) -> None:
    junit, summary = tmp_path / "out" / "gate.xml", tmp_path / "summary.md"
    code, out, err = _submit(
        live_server, full_copy, "--kind", "full", "--junit", str(junit), "--summary", str(summary)
    )
    assert code == 0, out + err
    assert "pass" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(N_RULES)
    assert suite.get("failures") == "0"
    assert len(suite.findall("testcase")) == N_RULES
    assert not suite.findall("testcase/failure")
    text = summary.read_text()
    assert "✅ pass" in text
    assert "| rule | baseline | candidate | delta | interval | verdict |" in text


def test_looping_adapter_is_a_regression_with_exit_1(
    live_server: LiveServer, looping_adapter: Path, tmp_path: Path
) -> None:
    junit, summary = tmp_path / "gate.xml", tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    code, out, err = _submit(
        live_server,
        looping_adapter,
        "--sweep",
        "s1",
        "--junit",
        str(junit),
        "--summary",
        str(summary),
        "--tag",
        "team=cli",
    )
    assert code == 1, out + err
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failures = suite.findall("testcase/failure")
    assert suite.get("failures") == str(len(failures)) != "0"
    failed = {
        case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None
    }
    assert any(name and name.startswith("no_regression:repetition") for name in failed)
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, as $GITHUB_STEP_SUMMARY expects
    assert "❌ fail" in text
    assert "**fail**" in text


def test_json_output_carries_the_decision(live_server: LiveServer, full_copy: Path) -> None:
    code, out, _ = _submit(live_server, full_copy, "--kind", "full", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["exit_code"] == 0
    assert data["decision"]["verdict"] == "pass"
    assert len(data["decision"]["rules"]) == N_RULES
    assert data["evaluation"]["status"] == "succeeded"


def test_bad_path_is_an_error_with_exit_2(live_server: LiveServer, tmp_path: Path) -> None:
    code, out, err = _submit(live_server, tmp_path / "no-such-checkpoint")
    assert code == 2
    assert "CheckpointNotVisible" in err
    assert "does not exist" in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_unreachable_server_is_an_error_with_exit_2(
    live_server: LiveServer, full_copy: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        "submit",
        str(full_copy),
        "--family",
        "tiny",
        "--lr",
        "1e-4",
        "--dataset",
        "ds",
        "--wait",
        "--url",
        url,
        env=live_server.env(),
    )
    assert result.returncode == 2
    assert f"cannot reach the tunegate server at {url}" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_submit_without_wait_queues_and_exits_0(live_server: LiveServer, full_copy: Path) -> None:
    result = run_cli(
        "submit",
        str(full_copy),
        "--family",
        "tiny",
        "--lr",
        "3e-4",
        "--dataset",
        "ds",
        "--json",
        env=live_server.env(),
    )
    assert result.returncode == 0, result.stderr
    candidate = json.loads(result.stdout)["candidate"]
    assert candidate["evaluation_id"] is not None
    shown = run_cli(
        "eval", "show", str(candidate["evaluation_id"]), "--json", env=live_server.env()
    )
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["id"] == candidate["evaluation_id"]


def test_eval_rescore_scores_the_stored_outputs_again(
    live_server: LiveServer, full_copy: Path
) -> None:
    submitted = run_cli(
        "submit",
        str(full_copy),
        "--family",
        "tiny",
        "--lr",
        "5e-4",
        "--dataset",
        "ds",
        "--wait",
        "--json",
        env=live_server.env(),
    )
    assert submitted.returncode == 0, submitted.stderr
    candidate = json.loads(submitted.stdout)["candidate"]
    evaluation_id = candidate["evaluation_id"]
    ids = [evaluation_id, candidate["baseline_evaluation_id"]]
    result = run_cli(
        "eval",
        "rescore",
        *map(str, ids),  # several ids: one request, one job
        "-e",
        "collapse",
        "--wait",
        "--json",
        env=live_server.env(),
    )
    assert result.returncode == 0, result.stderr
    evaluations = json.loads(result.stdout)
    assert [e["id"] for e in evaluations] == ids
    for evaluation in evaluations:
        assert evaluation["status"] == "succeeded"
        assert set(evaluation["provenance"]["evaluators"]) == {"collapse"}
        metrics = {a["metric"] for a in evaluation["aggregates"]}
        assert metrics >= {"empty_output", "perplexity_token"}
    refused = run_cli("eval", "rescore", str(evaluation_id), "-e", "nope", env=live_server.env())
    assert refused.returncode == 2
    assert "UnknownEvaluator" in refused.stderr or "unknown evaluator" in refused.stderr


def test_promote_without_a_passing_decision_exits_1(
    live_server: LiveServer, looping_adapter: Path
) -> None:
    code, out, err = _submit(live_server, looping_adapter, "--json")  # the regression again
    assert code == 1, out + err
    candidate = json.loads(out)["candidate"]
    result = run_cli("promote", "tiny", str(candidate["id"]), env=live_server.env())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "promotion refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_evaluation_exits_2(live_server: LiveServer, fresh_adapter_copy: Path) -> None:
    code, out, err = _submit(live_server, fresh_adapter_copy, "--json")
    assert code == 2, out + err
    data = json.loads(out)
    assert data["exit_code"] == 2
    assert data["decision"] is None
    assert data["evaluation"]["status"] == "failed"
    assert data["evaluation"]["error"].startswith("AdapterNotApplied")
    assert "failed: AdapterNotApplied" in data["error"]


def test_timed_out_wait_exits_2(live_server: LiveServer, fresh_adapter_copy: Path) -> None:
    result = run_cli(
        "submit",
        str(fresh_adapter_copy),
        "--family",
        "tiny",
        "--lr",
        "2e-4",
        "--dataset",
        "ds",
        "--wait",
        "--timeout",
        "0",
        env=live_server.env(),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "timed out after 0s" in result.stderr
    assert "Traceback" not in result.stderr


def test_cancelled_wait_exits_2(idle_server: LiveServer, tmp_path: Path) -> None:
    """The server has no worker, so the evaluation waits queued until the test cancels it."""
    adapter = idle_server.checkpoints / "never-run"
    shutil.copytree(trained_adapter("tiny", "capitals", lr=1e-2, steps=5), adapter)
    waiting = subprocess.Popen(
        [
            TUNEGATE,
            "submit",
            str(adapter),
            *("--family", "tiny", "--lr", "1e-4", "--dataset", "ds"),
            *("--wait", "--timeout", "300", "--json"),
        ],
        env=idle_server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    headers = {"Authorization": f"Bearer {idle_server.token}"}
    try:
        with httpx.Client(base_url=idle_server.url, headers=headers, timeout=10) as api:
            deadline = time.monotonic() + 120
            candidate_evaluation = None
            while candidate_evaluation is None and time.monotonic() < deadline:
                page = api.get("/v1/evaluations", params={"status": "queued"}).json()
                found = [e for e in page["items"] if e["baseline_evaluation_id"] is not None]
                candidate_evaluation = found[0]["id"] if found else None
                time.sleep(0.2)
            assert candidate_evaluation is not None, "submit never queued its evaluation"
            cancelled = api.post(f"/v1/evaluations/{candidate_evaluation}/cancel")
            assert cancelled.status_code == 200, cancelled.text
        out, err = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 2, out + err
    data = json.loads(out)
    assert data["exit_code"] == 2
    assert data["decision"] is None
    assert data["evaluation"]["status"] == "cancelled"
    assert f"evaluation {candidate_evaluation} cancelled" in data["error"]
