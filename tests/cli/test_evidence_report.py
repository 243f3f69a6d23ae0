"""``tunegate report CANDIDATE --html/--md``: the evidence report of a real regression,
self-contained and offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.conftest import LiveServer, run_cli


def test_report_of_a_looping_adapter(
    live_server: LiveServer, looping_adapter: Path, tmp_path: Path
) -> None:
    submitted = run_cli(
        *("submit", str(looping_adapter), "--family", "tiny", "--lr", "2e-2"),
        *("--sweep", "report-sweep", "--dataset", "ds", "--wait", "--timeout", "500", "--json"),
        env=live_server.env(),
    )
    assert submitted.returncode == 1, submitted.stderr  # a regression
    candidate_id = json.loads(submitted.stdout)["candidate"]["id"]

    page, md = tmp_path / "report.html", tmp_path / "md" / "report.md"
    result = run_cli(
        "report", str(candidate_id), "--html", str(page), "--md", str(md), env=live_server.env()
    )
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    # the verdict and the failing rule, the sweep chart inline, the looping output
    assert '<span class="badge fail">fail</span>' in text
    assert re.search(r'<td class="fail">fail</td>', text)
    assert "no_regression:repetition" in text
    assert '<img alt="sweep chart" src="data:image/png;base64,iVBOR' in text
    assert "ho ho ho" in text
    assert "lr 0.02" in text
    # provenance: the dataset digest and library versions
    evaluation = json.loads(
        run_cli(
            "eval",
            "show",
            str(json.loads(submitted.stdout)["evaluation"]["id"]),
            "--json",
            env=live_server.env(),
        ).stdout
    )
    assert evaluation["provenance"]["dataset_digest"] in text
    assert "transformers" in text
    # offline: nothing fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<script" not in text
    assert "@import" not in text

    markdown = md.read_text()
    assert "❌ fail — promotion refused" in markdown
    assert "![sweep chart](report-sweep.png)" in markdown
    assert (md.parent / "report-sweep.png").read_bytes().startswith(b"\x89PNG")
    assert "| rule | baseline | candidate | delta | interval | p | n | verdict |" in markdown
    assert "ho ho ho" in markdown


def test_report_of_an_unknown_candidate_exits_2(live_server: LiveServer) -> None:
    result = run_cli("report", "99999", env=live_server.env())
    assert result.returncode == 2
    assert "CandidateNotFound: candidate 99999 does not exist" in result.stderr
