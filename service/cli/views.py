"""Rich renderings of the sweep view, promotion history and an evaluation."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel
from rich.console import RenderableType
from rich.table import Table

from service.api.schemas.evaluations import EvaluationDetail
from service.api.schemas.sweeps import SweepOut, SweepRowOut
from service.cli.report import fmt, signed

LABEL_STYLE = {"good": "green", "underfit": "yellow", "forgetting": "magenta", "collapse": "red"}

Effect = tuple[float | None, float | None, float | None]
"""(effect, ci_low, ci_high); the interval is (None, None) where there is none."""


def lift_of(row: SweepRowOut) -> Effect:
    """The in-domain lift of the target metric, with its interval."""
    return row.in_domain_lift, row.lift_ci_low, row.lift_ci_high


def ood_of(row: SweepRowOut) -> Effect:
    """The out-of-domain change (negative = forgetting), with its interval."""
    return row.ood_delta, row.ood_ci_low, row.ood_ci_high


def _effect(effect: Effect) -> str:
    """``+0.12 [0.05, 0.2]``: the effect and its interval when there is one."""
    value, low, high = effect
    text = signed(value)
    if low is not None and high is not None:
        text += f" [{fmt(low, 2)}, {fmt(high, 2)}]"
    return text


def sweep_table(view: SweepOut) -> Table:
    """One row per candidate of the sweep, by learning rate."""
    table = Table(title=f"sweep {view.family}/{view.sweep}")
    for column in (
        "lr",
        "candidate",
        "verdict",
        "label",
        "in-domain lift",
        "out-of-domain Δ",
        "halluc. Δ",
        "ppl ratio",
        "empty",
        "repetition",
        "training log",
    ):
        table.add_column(column, justify="left" if column in ("verdict", "label") else "right")
    for row in view.rows:
        verdict = row.verdict or row.status
        label = row.label or "—"
        lr_text = fmt(row.learning_rate, 3)
        if view.recommended_rate is not None and row.learning_rate == view.recommended_rate:
            lr_text = f"[bold green]{lr_text} ★[/]"
        table.add_row(
            lr_text,
            str(row.candidate_id),
            f"[{'green' if verdict == 'pass' else 'red'}]{verdict}[/]",
            f"[{LABEL_STYLE.get(label, 'white')}]{label}[/]",
            _effect(lift_of(row)),
            _effect(ood_of(row)),
            signed(row.hallucination_change),
            fmt(row.perplexity_ratio, 3),
            fmt(row.empty_output, 2),
            fmt(row.repetition, 2),
            row.diagnosis.label if row.diagnosis is not None else "—",
        )
    return table


def records_table(records: Sequence[BaseModel], title: str) -> Table:
    """A table of records (response models), one column per scalar field."""
    table = Table(title=title)
    columns: list[str] = []
    for record in records:
        for name in type(record).model_fields:
            value = getattr(record, name)
            if name not in columns and not isinstance(value, BaseModel | dict | list):
                columns.append(name)
    for column in columns:
        table.add_column(column)
    for record in records:
        table.add_row(*(fmt(getattr(record, c, None)) for c in columns))
    return table


def evaluation_text(evaluation: EvaluationDetail) -> list[RenderableType]:
    """Status lines and an aggregates table for ``tunegate eval show``."""
    progress = evaluation.progress
    lines: list[RenderableType] = [
        f"evaluation {evaluation.id}: {evaluation.status} "
        f"({progress.done}/{progress.total} examples)"
    ]
    for name, value in (
        ("error", evaluation.error),
        ("baseline evaluation id", evaluation.baseline_evaluation_id),
        ("gate decision id", evaluation.gate_decision_id),
        ("reused from id", evaluation.reused_from_id),
    ):
        if value is not None:
            lines.append(f"{name}: {value}")
    if evaluation.aggregates:
        lines.append(records_table(evaluation.aggregates, "aggregates"))
    return lines
