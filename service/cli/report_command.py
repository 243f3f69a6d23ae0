"""``tunegate report CANDIDATE --html FILE --md FILE``: the evidence report, offline."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from service.cli.chart import sweep_chart
from service.cli.evidence import gather
from service.cli.evidence_render import render_html, render_markdown
from service.cli.options import DebugOpt, TokenOpt, UrlOpt, err, out, session
from service.cli.report import write_text


def report(
    candidate: Annotated[int, typer.Argument(help="Candidate id")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here")
    ] = None,
    md: Annotated[
        Path | None,
        typer.Option("--md", help="Write a Markdown report here (the chart PNG beside it)"),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    debug: DebugOpt = False,
) -> None:
    """The evidence behind a candidate's gate decision: the decision table, the sweep chart,
    the worst regressions with their outputs, provenance. Markdown on stdout without files."""
    with session(url, token, debug) as client:
        evidence = gather(client, candidate)
        chart_png: bytes | None = None
        chart_name: str | None = None
        if evidence.sweep is not None and evidence.sweep.rows:
            if md is not None:
                chart_name = f"{md.stem}-sweep.png"
                md.parent.mkdir(parents=True, exist_ok=True)
                chart_png = sweep_chart(evidence.sweep, md.parent / chart_name).read_bytes()
            elif html is not None:
                with tempfile.TemporaryDirectory(prefix="tunegate-report-") as tmp:
                    chart_png = sweep_chart(evidence.sweep, Path(tmp) / "sweep.png").read_bytes()
        if html is not None:
            write_text(html, render_html(evidence, chart_png))
            err.print(f"wrote {html}", highlight=False)
        if md is not None:
            write_text(md, render_markdown(evidence, chart_name))
            err.print(f"wrote {md}", highlight=False)
        if html is None and md is None:
            out.print(render_markdown(evidence), markup=False, highlight=False, soft_wrap=True)
