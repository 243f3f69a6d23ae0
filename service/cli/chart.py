"""The learning-rate sweep chart: each key metric against the rate, plus the loss curves.

Drawn from the sweep view's JSON (``GET /v1/sweeps/{family}/{sweep}``) with matplotlib's
Agg backend (no display needed). Metric panels put the learning rate on a log axis, draw
the paired confidence interval as an error bar where the server gives one, colour each
point by its sweep label and mark the recommended rate; the last panel overlays the
training-loss curves of every candidate of the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service.cli.views import effect_of

LABEL_COLOURS = {
    "good": "#2ca02c",
    "underfit": "#7f7f7f",
    "forgetting": "#ff7f0e",
    "collapse": "#d62728",
}

# (row key, panel title, reference line: value meaning "no change", or None)
PANELS: tuple[tuple[str, str, float | None], ...] = (
    ("in_domain_lift", "in-domain lift (target metric)", 0.0),
    ("out_of_domain_delta", "out-of-domain delta (negative = forgetting)", 0.0),
    ("hallucination_change", "hallucination change (positive = more)", 0.0),
    ("perplexity_ratio", "held-out perplexity ratio", 1.0),
    ("empty_output", "empty outputs / repetition", None),
)


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _point(row: Mapping[str, Any], key: str) -> tuple[float | None, float | None, float | None]:
    """(value, ci_low, ci_high) of a row's metric, the interval only where there is one."""
    effect, low, high = effect_of(row, key)
    return _finite(effect), _finite(low), _finite(high)


def _rows(sweep: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = [r for r in sweep.get("rows", []) if _finite(r.get("learning_rate"))]
    return sorted(rows, key=lambda r: float(r["learning_rate"]))


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", transform=ax.transAxes, ha="center", color="#888888")


def _metric_panel(ax: Any, rows: Sequence[Mapping[str, Any]], key: str, zero: float | None) -> None:
    """One metric against the rate: ``o`` = gate passed, ``X`` = failed; colour = label."""
    for row in rows:
        lr = float(row["learning_rate"])
        colour = LABEL_COLOURS.get(str(row.get("label")), "#1f77b4")
        marker = "o" if row.get("verdict") == "pass" else "X"
        value, low, high = _point(row, key)
        if value is None:
            continue
        if low is not None and high is not None:
            yerr = [[max(value - low, 0.0)], [max(high - value, 0.0)]]
            ax.errorbar([lr], [value], yerr=yerr, fmt=marker, color=colour, capsize=4)
        else:
            ax.plot([lr], [value], marker, color=colour)
    points = [(float(r["learning_rate"]), _point(r, key)[0]) for r in rows]
    points = [(x, y) for x, y in points if y is not None]
    if not points:
        _no_data(ax, "data")
    if len(points) > 1:
        ax.plot(*zip(*points, strict=True), "-", color="#bbbbbb", zorder=0)
    if zero is not None:
        ax.axhline(zero, color="black", linewidth=0.8, linestyle=":")


def _collapse_panel(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    for key, marker in (("empty_output", "s"), ("repetition", "^")):
        points = [(float(r["learning_rate"]), _finite(r.get(key))) for r in rows]
        points = [(x, y) for x, y in points if y is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, label=key)
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        _no_data(ax, "collapse threshold in the policy")


def _loss_panel(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Every candidate's loss curve, one colour per rate (low rates light, high rates dark)."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis_r"]
    for i, row in enumerate(rows):
        log = row.get("training_log") or []
        points = [(p.get("step"), _finite(p.get("loss"))) for p in log]
        points = [(s, y) for s, y in points if s is not None and y is not None]
        if points:
            colour = cmap(0.15 + 0.75 * i / max(len(rows) - 1, 1))
            ax.plot(
                *zip(*points, strict=True),
                label=f"lr {float(row['learning_rate']):g}",
                color=colour,
                alpha=0.9,
            )
    ax.set_title("training loss", fontsize=9)
    ax.set_xlabel("step")
    if ax.get_legend_handles_labels()[0]:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        _no_data(ax, "training logs submitted")


def sweep_chart(sweep: Mapping[str, Any], path: Path) -> Path:
    """Draw the sweep chart to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = _rows(sweep)
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    flat = list(axes.flat)
    recommended = _finite(sweep.get("recommended_rate"))
    for ax, (key, title, zero) in zip(flat, PANELS, strict=False):
        if key == "empty_output":
            _collapse_panel(ax, rows)
        else:
            _metric_panel(ax, rows, key, zero)
        ax.set_title(title, fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        if recommended is not None:
            ax.axvline(recommended, color="#2ca02c", linestyle="--", linewidth=1)
    _loss_panel(flat[-1], rows)
    handles = [
        Line2D([], [], marker="s", linestyle="", color=c, label=label)
        for label, c in LABEL_COLOURS.items()
    ]
    handles += [
        Line2D([], [], marker=m, linestyle="", color="black", label=f"gate {v}")
        for m, v in (("o", "pass"), ("X", "fail"))
    ]
    if recommended is not None:
        handles.append(
            Line2D([], [], color="#2ca02c", linestyle="--", label=f"recommended {recommended:g}")
        )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(f"sweep {sweep.get('family')}/{sweep.get('sweep')}")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
