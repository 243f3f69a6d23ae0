"""JUnit XML and the Markdown summary from decision JSON (no server needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from service.api.schemas.decisions import DecisionOut
from service.cli.report import junit_xml, markdown_summary


def _rule(rule_id: str, verdict: str, **numbers: Any) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "kind": rule_id.split(":")[0],
        "metric": rule_id.split(":")[1],
        "scope": "domain=out",
        "verdict": verdict,
        "baseline_value": 0.5,
        "candidate_value": 0.4,
        "effect": -0.1,
        "ci_low": -0.15,
        "ci_high": -0.05,
        "p_value": 0.01,
        "n": 30,
        "tolerance": 0.03,
        "min_detectable_effect": None,
        "message": f"{verdict} <&> details",
        **numbers,
    }


DECISION = DecisionOut.model_validate(
    {
        "id": 7,
        "verdict": "fail",
        "summary": "fail: 2 of 3 rules failed",
        "policy_version": 1,
        "candidate_evaluation_id": 3,
        "baseline_evaluation_id": 2,
        "created_at": "2026-11-29T20:00:00Z",
        "rules": [
            _rule("no_regression:relevance:out", "pass"),
            _rule("out_of_domain_delta:relevance_reference:out", "fail"),
            _rule("min_improvement:token_f1:in", "inconclusive_fail", effect=None, ci_low=None),
        ],
    }
)


def test_junit_has_one_case_per_rule_and_fails_inconclusive_fail() -> None:
    root = ET.fromstring(junit_xml(DECISION, suite="tunegate.f", case_class="c"))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [r.rule_id for r in DECISION.rules]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == [
        "out_of_domain_delta:relevance_reference:out",
        "min_improvement:token_f1:in",
    ]
    assert suite.get("failures") == "2"
    assert root.get("tests") == "3"
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("type") == "fail"
    assert "<&>" in (failure.text or "")  # escaped on the way out, intact on the way back


def test_junit_without_a_decision_is_an_error_case() -> None:
    root = ET.fromstring(
        junit_xml(None, suite="s", case_class="c", error="the candidate evaluation failed: OOM")
    )
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("errors") == "1"
    error = suite.find("testcase/error")
    assert error is not None
    assert "OOM" in (error.get("message") or "")


def test_markdown_summary_is_a_table_with_failures_in_bold() -> None:
    text = markdown_summary(DECISION, title="gate")
    lines = text.splitlines()
    assert lines[0] == "## gate"
    assert "❌ fail — promotion refused" in text
    rows = [line for line in lines if line.startswith("| ") and "rule |" not in line]
    assert len(rows) == 3
    assert rows[1].endswith("| **fail** |")
    assert "[-0.15, -0.05]" in rows[0]
