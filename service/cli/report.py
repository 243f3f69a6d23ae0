"""Rendering a gate decision for people and for CI: a rich table, JUnit XML, Markdown.

All three read the server's answers as the client parsed them (the :class:`DecisionOut` of
``GET /v1/decisions/{id}`` and the candidate record); none recomputes anything. JUnit has one
test case per rule, a ``<failure>`` for ``fail`` and ``inconclusive_fail`` (the gate counts
both as failures); an evaluation that never reached a decision becomes one ``<error>`` case,
so a CI page never shows a green suite for a gate that did not run.

A sweep submitted in one command (several checkpoints) is reported per candidate instead:
one test case and one Markdown table row per candidate (:class:`CandidateResult`).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from service.api.schemas.candidates import CandidateOut
from service.api.schemas.decisions import DecisionOut, RuleResultOut

FAILING = frozenset({"fail", "inconclusive_fail"})
_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "inconclusive_pass": "yellow",
    "inconclusive_fail": "red",
    "skipped": "dim",
}


def fmt(value: object, digits: int = 4) -> str:
    """A number in ``digits`` significant digits; ``—`` for a missing or non-finite one."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def signed(value: object, digits: int = 3) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:+.{digits}g}"
    return fmt(value)


def interval(rule: RuleResultOut) -> str:
    if rule.ci_low is None and rule.ci_high is None:
        return "—"
    return f"[{fmt(rule.ci_low, 3)}, {fmt(rule.ci_high, 3)}]"


def rule_label(rule: RuleResultOut) -> str:
    """The rule id; with its scope when the id was named by hand (derived ids carry it)."""
    derived = rule.rule_id.startswith(f"{rule.kind}:")
    return rule.rule_id if derived or not rule.scope else f"{rule.rule_id} ({rule.scope})"


def delta(rule: RuleResultOut) -> str:
    """The oriented effect, or ``×ratio`` for a perplexity-ratio rule."""
    if rule.ratio is not None:
        return f"×{fmt(rule.ratio, 3)}"
    return signed(rule.effect)


def verdict_table(decision: DecisionOut) -> Table:
    """Rule, baseline, candidate, delta, interval and verdict, one row per rule."""
    table = Table(title=f"gate decision {decision.id}: {decision.verdict}")
    for column, justify in (
        ("rule", "left"),
        ("baseline", "right"),
        ("candidate", "right"),
        ("delta", "right"),
        ("interval", "right"),
        ("verdict", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for rule in decision.rules:
        table.add_row(
            rule_label(rule),
            fmt(rule.baseline_value),
            fmt(rule.candidate_value),
            delta(rule),
            interval(rule),
            f"[{_STYLE.get(rule.verdict, 'white')}]{rule.verdict}[/]",
        )
    return table


def diagnosis_lines(candidate: CandidateOut | None) -> list[str]:
    """The training-log diagnosis as plain lines (empty when the candidate has none)."""
    diagnosis = candidate.diagnosis if candidate is not None else None
    if diagnosis is None:
        return []
    return [f"training log: {diagnosis.label}", *(f"  - {r}" for r in diagnosis.reasons)]


# --- JUnit ---------------------------------------------------------------------------------


def _rule_text(rule: RuleResultOut) -> str:
    return (
        f"{rule.message}\n"
        f"baseline={fmt(rule.baseline_value)} "
        f"candidate={fmt(rule.candidate_value)} "
        f"effect={signed(rule.effect)} interval={interval(rule)} "
        f"p={fmt(rule.p_value, 3)} n={rule.n} "
        f"tolerance={fmt(rule.tolerance)}"
    )


def junit_xml(
    decision: DecisionOut | None,
    *,
    suite: str,
    case_class: str,
    error: str | None = None,
) -> str:
    """JUnit XML: one ``<testcase>`` per rule; ``error`` (no decision) becomes an ``<error>``."""
    root = ET.Element("testsuites")
    rules = decision.rules if decision is not None else []
    failures = sum(1 for r in rules if r.verdict in FAILING)
    errors = 1 if error is not None else 0
    tests = len(rules) + errors
    attrs = {"name": suite, "tests": str(tests), "failures": str(failures)}
    skipped = sum(1 for r in rules if r.verdict == "skipped")
    attrs |= {"errors": str(errors), "skipped": str(skipped), "time": "0"}
    root.attrib.update({k: attrs[k] for k in ("tests", "failures", "errors")})
    testsuite = ET.SubElement(root, "testsuite", attrs)
    if error is not None:
        case = ET.SubElement(
            testsuite, "testcase", {"classname": case_class, "name": "evaluation", "time": "0"}
        )
        ET.SubElement(case, "error", {"message": error.splitlines()[0][:500]}).text = error
    for rule in rules:
        case = ET.SubElement(
            testsuite,
            "testcase",
            {"classname": case_class, "name": rule_label(rule), "time": "0"},
        )
        verdict = rule.verdict
        if verdict in FAILING:
            failure = ET.SubElement(
                case, "failure", {"message": f"{verdict}: {rule.message}"[:500]}
            )
            failure.attrib["type"] = verdict
            failure.text = _rule_text(rule)
        elif verdict == "skipped":
            ET.SubElement(case, "skipped", {"message": rule.message[:500]})
        else:
            ET.SubElement(case, "system-out").text = f"{verdict}: {_rule_text(rule)}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class CandidateResult:
    """One candidate of a multi-checkpoint submit as the reports show it: its decision, or
    the error that left it without one (a refused registration, a failed evaluation)."""

    name: str
    learning_rate: float
    candidate_id: int | None
    decision: DecisionOut | None
    error: str | None = None
    label: str | None = None

    @property
    def verdict(self) -> str:
        """``pass`` | ``fail`` | ``error``."""
        if self.decision is None or self.error is not None:
            return "error"
        return self.decision.verdict


def junit_candidates_xml(results: Sequence[CandidateResult], *, suite: str, case_class: str) -> str:
    """JUnit XML for a sweep: one suite, one ``<testcase>`` per candidate — a ``<failure>``
    listing its failing rules when its gate failed, an ``<error>`` when it has no decision."""
    root = ET.Element("testsuites")
    verdicts = [r.verdict for r in results]
    counts = {
        "tests": str(len(results)),
        "failures": str(verdicts.count("fail")),
        "errors": str(verdicts.count("error")),
    }
    root.attrib.update(counts)
    attrs = {"name": suite, **counts, "skipped": "0", "time": "0"}
    testsuite = ET.SubElement(root, "testsuite", attrs)
    for result in results:
        case = ET.SubElement(
            testsuite, "testcase", {"classname": case_class, "name": result.name, "time": "0"}
        )
        decision = result.decision
        if result.verdict == "error" or decision is None:
            error = result.error or "no gate decision"
            ET.SubElement(case, "error", {"message": error.splitlines()[0][:500]}).text = error
        elif result.verdict == "fail":
            failing = [r for r in decision.rules if r.verdict in FAILING]
            failure = ET.SubElement(
                case, "failure", {"message": decision.summary[:500], "type": "fail"}
            )
            failure.text = "\n\n".join(f"{rule_label(r)}: {_rule_text(r)}" for r in failing)
        else:
            ET.SubElement(case, "system-out").text = decision.summary
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


# --- Markdown ------------------------------------------------------------------------------


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_summary(
    decision: DecisionOut | None,
    *,
    title: str,
    candidate: CandidateOut | None = None,
    error: str | None = None,
) -> str:
    """A Markdown summary for ``$GITHUB_STEP_SUMMARY`` (or a merge-request comment)."""
    lines = [f"## {title}", ""]
    if decision is None:
        lines += [f"**error** — {_md(error or 'no gate decision')}", ""]
        return "\n".join(lines)
    mark = "✅ pass" if decision.verdict == "pass" else "❌ fail — promotion refused"
    lines += [f"**{mark}**", "", _md(decision.summary), ""]
    lines += [
        "| rule | baseline | candidate | delta | interval | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for rule in decision.rules:
        verdict_text = f"**{rule.verdict}**" if rule.verdict in FAILING else rule.verdict
        lines.append(
            f"| {_md(rule_label(rule))} | {fmt(rule.baseline_value)} | "
            f"{fmt(rule.candidate_value)} | {delta(rule)} | "
            f"{interval(rule)} | {verdict_text} |"
        )
    diagnosis = diagnosis_lines(candidate)
    if diagnosis:
        lines += ["", f"**{_md(diagnosis[0])}**", *(_md(d) for d in diagnosis[1:])]
    lines.append("")
    return "\n".join(lines)


_MARK = {"pass": "✅ pass", "fail": "❌ **fail**", "error": "⚠️ **error**"}


def markdown_candidates(results: Sequence[CandidateResult], *, title: str) -> str:
    """One Markdown section for a sweep: a headline and one table row per candidate."""
    verdicts = [r.verdict for r in results]
    failed, errors = verdicts.count("fail"), verdicts.count("error")
    total = len(results)
    headline = f"✅ all {total} candidates pass"
    if failed or errors:
        parts = [f"{failed} of {total} failed — promotion refused"] if failed else []
        parts += [f"{errors} of {total} without a decision (error)"] if errors else []
        headline = f"❌ {'; '.join(parts)}"
    lines = [f"## {title}", "", f"**{headline}**", ""]
    lines += ["| lr | candidate | verdict | label | summary |", "|---:|---:|---|---|---|"]
    for result in results:
        decision = result.decision
        text = result.error or (decision.summary if decision is not None else "")
        candidate = "—" if result.candidate_id is None else str(result.candidate_id)
        lines.append(
            f"| {fmt(result.learning_rate, 3)} | {candidate} | {_MARK[result.verdict]} | "
            f"{_md(result.label or '—')} | {_md(text)} |"
        )
    lines.append("")
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    """Write ``text``, creating parent folders (CI artefact paths often do not exist yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def append_text(path: Path, text: str) -> None:
    """Append ``text`` (``$GITHUB_STEP_SUMMARY`` is shared by every command of a step)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
