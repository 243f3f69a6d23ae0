"""Render :class:`~service.cli.evidence.Evidence` as one self-contained HTML page or as
Markdown, to attach to a model card or a pull request.

The HTML has its style inline and the sweep chart as a ``data:`` URI: no script, no font,
no stylesheet, no image is fetched, so it opens offline and survives being mailed around.
Every text from the server is escaped. Markdown links the chart as a file beside it.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence

from service.api.schemas.decisions import DecisionOut, ExampleDiffOut
from service.api.schemas.sweeps import SweepOut
from service.cli.evidence import Evidence
from service.cli.report import FAILING, delta, fmt, interval, rule_label, signed

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:72em;
color:#1d1d1f;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid
#ddd;padding-bottom:.2em}table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:600}
.badge{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;font-weight:600}
.badge.pass{background:#137333;color:#fff}.badge.fail{background:#b3261e;color:#fff}
pre{white-space:pre-wrap;margin:0;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace}
.muted{color:#6e6e73}img{max-width:100%}
"""

_DECISION_COLUMNS = ("rule", "baseline", "candidate", "delta", "interval", "p", "n", "verdict")
_WORST_COLUMNS = ("example", "cohort", "prompt", "reference", "baseline output", "candidate output")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _verdict_class(verdict: str) -> str:
    return "fail" if verdict in FAILING or verdict == "fail" else "pass"


def _decision_rows(decision: DecisionOut) -> list[list[str]]:
    return [
        [
            rule_label(rule),
            fmt(rule.baseline_value),
            fmt(rule.candidate_value),
            delta(rule),
            interval(rule),
            fmt(rule.p_value, 3),
            str(rule.n if rule.n is not None else "—"),
            rule.verdict,
        ]
        for rule in decision.rules
    ]


def _candidate_facts(ev: Evidence) -> list[tuple[str, str]]:
    c = ev.candidate
    dataset = ev.evaluation.dataset
    facts = [
        ("candidate", f"{c.id} {c.name or ''}".strip()),
        ("family", c.family),
        ("kind", c.kind),
        ("base model", c.base_model),
        ("learning rate", fmt(c.learning_rate)),
        ("sweep", c.sweep or "—"),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(c.tags.items())) or "—"),
        ("evaluation", f"{ev.evaluation.id} ({ev.evaluation.status})"),
        ("baseline evaluation", str(ev.baseline.id if ev.baseline is not None else "—")),
        ("dataset", f"{dataset.name}@{dataset.version}"),
    ]
    if c.diagnosis is not None:
        reasons = "; ".join(c.diagnosis.reasons)
        facts.append(("training log", f"{c.diagnosis.label}: {reasons}".rstrip(": ")))
    return facts


def _provenance(ev: Evidence) -> list[tuple[str, str]]:
    prov = ev.evaluation.provenance
    facts = [("checkpoint digest", ev.candidate.checkpoint_digest or "—")]
    for key in ("dataset_digest", "base_model", "dtype", "device", "worker"):
        if key in prov:
            facts.append((key.replace("_", " "), str(prov[key])))
    for key in ("generation", "evaluators", "libraries", "base_model_digests", "candidate_digests"):
        if prov.get(key):
            facts.append((key.replace("_", " "), json.dumps(prov[key], sort_keys=True)))
    return facts


def _sweep_rows(sweep: SweepOut, candidate_id: int) -> list[list[str]]:
    recommended = sweep.recommended_rate
    rows = []
    for row in sweep.rows:
        lr = row.learning_rate
        mark = " ★ recommended" if recommended is not None and lr == recommended else ""
        this = " ← this candidate" if row.candidate_id == candidate_id else ""
        rows.append(
            [
                f"{fmt(lr, 3)}{mark}{this}",
                str(row.candidate_id),
                row.verdict or row.status,
                row.label or "—",
                signed(row.in_domain_lift),
                signed(row.ood_delta),
            ]
        )
    return rows


_SWEEP_COLUMNS = ("lr", "candidate", "verdict", "label", "in-domain lift", "out-of-domain Δ")


def _worst_rows(items: Sequence[ExampleDiffOut]) -> list[list[str]]:
    return [
        [
            d.example_id,
            d.cohort or "—",
            d.input,
            d.reference or "—",
            f"{d.baseline_output}  [{fmt(d.baseline_score, 3)}]",
            f"{d.candidate_output}  [{fmt(d.candidate_score, 3)}]  Δ {signed(d.delta)}",
        ]
        for d in items
    ]


# --- HTML ----------------------------------------------------------------------------------


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[str]], pre: bool = False) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column, cell in zip(columns, row, strict=True):
            if column == "verdict":
                cells.append(f'<td class="{_verdict_class(cell)}">{_e(cell)}</td>')
            elif pre:
                cells.append(f"<td><pre>{_e(cell)}</pre></td>")
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_facts(facts: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td><pre>{_e(v)}</pre></td></tr>" for k, v in facts)
    return f"<table><tbody>{rows}</tbody></table>"


def render_html(ev: Evidence, chart_png: bytes | None = None) -> str:
    """The report as one HTML document with nothing external (see the module docstring)."""
    parts = [f"<h1>{_e(ev.title)}</h1>"]
    if ev.decision is not None:
        verdict = ev.decision.verdict
        parts.append(
            f'<p><span class="badge {_verdict_class(verdict)}">{_e(verdict)}</span> '
            f"gate decision {_e(ev.decision.id)} (policy version "
            f"{_e(ev.decision.policy_version)}) — {_e(ev.decision.summary)}</p>"
        )
        parts += ["<h2>Decision</h2>", _html_table(_DECISION_COLUMNS, _decision_rows(ev.decision))]
        messages = [
            f"<li><b>{_e(rule_label(r))}</b>: {_e(r.message)}</li>" for r in ev.decision.rules
        ]
        parts.append(f"<ul>{''.join(messages)}</ul>")
    else:
        parts.append(
            f'<p><span class="badge fail">no decision</span> evaluation '
            f"{_e(ev.evaluation.id)} is {_e(ev.evaluation.status)}: "
            f"{_e(ev.evaluation.error or '')}</p>"
        )
    parts += ["<h2>Candidate</h2>", _html_facts(_candidate_facts(ev))]
    if ev.sweep is not None:
        parts.append(f"<h2>Sweep {_e(ev.sweep.sweep)}</h2>")
        if chart_png:
            data = base64.b64encode(chart_png).decode("ascii")
            parts.append(f'<img alt="sweep chart" src="data:image/png;base64,{data}">')
        rows = _sweep_rows(ev.sweep, ev.candidate.id)
        parts.append(_html_table(_SWEEP_COLUMNS, rows))
    parts.append("<h2>Worst regressions</h2>")
    if not ev.worst:
        parts.append('<p class="muted">No example got worse under any per-example rule.</p>')
    for label, items in ev.worst.items():
        parts += [f"<h3>{_e(label)}</h3>", _html_table(_WORST_COLUMNS, _worst_rows(items), True)]
    parts += ["<h2>Provenance</h2>", _html_facts(_provenance(ev))]
    parts.append(f'<p class="muted">tunegate report, generated {_e(ev.generated_at)}</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(ev.title)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


# --- Markdown ------------------------------------------------------------------------------


def _md(text: object) -> str:
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", "<br>")


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    lines += [f"| {' | '.join(_md(c) for c in row)} |" for row in rows]
    return lines


def render_markdown(ev: Evidence, chart_file: str | None = None) -> str:
    """The report as Markdown; ``chart_file``: the sweep chart's path relative to it."""
    lines = [f"# {_md(ev.title)}", ""]
    if ev.decision is not None:
        mark = "✅ pass" if ev.decision.verdict == "pass" else "❌ fail — promotion refused"
        lines += [f"**{mark}** — gate decision {ev.decision.id}: {_md(ev.decision.summary)}"]
        lines += ["", "## Decision", "", *_md_table(_DECISION_COLUMNS, _decision_rows(ev.decision))]
    else:
        status = ev.evaluation.status
        lines += [f"**no decision** — evaluation {ev.evaluation.id} is {status}"]
    lines += ["", "## Candidate", "", *_md_table(("", ""), _candidate_facts_rows(ev))]
    if ev.sweep is not None:
        lines += ["", f"## Sweep {_md(ev.sweep.sweep)}", ""]
        if chart_file:
            lines += [f"![sweep chart]({chart_file})", ""]
        lines += _md_table(_SWEEP_COLUMNS, _sweep_rows(ev.sweep, ev.candidate.id))
    lines += ["", "## Worst regressions", ""]
    if not ev.worst:
        lines.append("No example got worse under any per-example rule.")
    for label, items in ev.worst.items():
        lines += [f"### {_md(label)}", "", *_md_table(_WORST_COLUMNS, _worst_rows(items)), ""]
    lines += ["", "## Provenance", "", *_md_table(("", ""), [list(f) for f in _provenance(ev)])]
    lines += ["", f"_tunegate report, generated {ev.generated_at}_", ""]
    return "\n".join(lines)


def _candidate_facts_rows(ev: Evidence) -> list[list[str]]:
    return [list(fact) for fact in _candidate_facts(ev)]
