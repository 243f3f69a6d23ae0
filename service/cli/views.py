"""Rich renderings of the sweep view, promotion history and an evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import RenderableType
from rich.table import Table

from service.cli.report import fmt, signed

LABEL_STYLE = {"good": "green", "underfit": "yellow", "forgetting": "magenta", "collapse": "red"}


# flat sweep-row keys of (effect, interval low, interval high) per nested key
_FLAT = {
    "in_domain_lift": ("in_domain_lift", "lift_ci_low", "lift_ci_high"),
    "out_of_domain_delta": ("ood_delta", "ood_ci_low", "ood_ci_high"),
}


def effect_of(row: Mapping[str, Any], key: str) -> tuple[Any, Any, Any]:
    """(effect, ci_low, ci_high) of a sweep row's ``key``.

    Accepts both shapes a sweep row may have: ``{key: {effect, ci_low, ci_high}}`` or flat
    keys (``in_domain_lift``, ``lift_ci_low``, ...; ``ood_delta``, ``ood_ci_low``, ...).
    """
    value = row.get(key)
    if isinstance(value, Mapping):
        return value.get("effect"), value.get("ci_low"), value.get("ci_high")
    effect, low, high = _FLAT.get(key, (key, "", ""))
    return row.get(effect), row.get(low), row.get(high)


def _effect(row: Mapping[str, Any], key: str) -> str:
    """``+0.12 [0.05, 0.2]``: the effect and its interval when there is one."""
    effect, low, high = effect_of(row, key)
    text = signed(effect)
    if low is not None and high is not None:
        text += f" [{fmt(low, 2)}, {fmt(high, 2)}]"
    return text


def sweep_table(view: Mapping[str, Any]) -> Table:
    """One row per candidate of the sweep, by learning rate."""
    table = Table(title=f"sweep {view.get('family')}/{view.get('sweep')}")
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
    recommended = view.get("recommended_rate")
    for row in view.get("rows", []):
        lr = row.get("learning_rate")
        verdict = str(row.get("verdict") or row.get("status") or "—")
        label = str(row.get("label") or "—")
        lr_text = fmt(lr, 3)
        if recommended is not None and lr == recommended:
            lr_text = f"[bold green]{lr_text} ★[/]"
        diagnosis = row.get("diagnosis") or {}
        table.add_row(
            lr_text,
            str(row.get("candidate_id")),
            f"[{'green' if verdict == 'pass' else 'red'}]{verdict}[/]",
            f"[{LABEL_STYLE.get(label, 'white')}]{label}[/]",
            _effect(row, "in_domain_lift"),
            _effect(row, "out_of_domain_delta"),
            signed(row.get("hallucination_change")),
            fmt(row.get("perplexity_ratio"), 3),
            fmt(row.get("empty_output"), 2),
            fmt(row.get("repetition"), 2),
            str(diagnosis.get("label", "—")) if isinstance(diagnosis, Mapping) else str(diagnosis),
        )
    return table


def records_table(records: Sequence[Mapping[str, Any]], title: str) -> Table:
    """A table of JSON records, with the columns their keys suggest (scalars only)."""
    table = Table(title=title)
    columns: list[str] = []
    for record in records:
        for key, value in record.items():
            if key not in columns and not isinstance(value, dict | list):
                columns.append(key)
    for column in columns:
        table.add_column(column)
    for record in records:
        table.add_row(*(fmt(record.get(c)) for c in columns))
    return table


def evaluation_text(evaluation: Mapping[str, Any]) -> list[RenderableType]:
    """Status lines and an aggregates table for ``tunegate eval show``."""
    progress = evaluation.get("progress") or {}
    lines: list[RenderableType] = [
        f"evaluation {evaluation.get('id')}: {evaluation.get('status')} "
        f"({progress.get('done', 0)}/{progress.get('total', 0)} examples)"
    ]
    for key in ("error", "baseline_evaluation_id", "gate_decision_id", "reused_from_id"):
        if evaluation.get(key) is not None:
            lines.append(f"{key.replace('_', ' ')}: {evaluation[key]}")
    aggregates = evaluation.get("aggregates") or []
    if aggregates:
        lines.append(records_table(aggregates, "aggregates"))
    return lines
