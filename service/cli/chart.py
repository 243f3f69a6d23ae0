"""The learning-rate sweep chart: each key metric against the rate, plus the loss curves.

Drawn from the sweep view (``GET /v1/sweeps/{family}/{sweep}``, a :class:`SweepOut`) with
matplotlib's Agg backend (no display needed). Metric panels put the learning rate on a log
axis, draw the paired confidence interval as an error bar where the server gives one, colour
each point by its sweep label and mark the recommended rate; the last panel overlays the
training-loss curves of every candidate of the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from service.api.schemas.sweeps import SweepOut, SweepRowOut
from service.cli.views import Effect, lift_of, ood_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes

LABEL_COLOURS = {
    "good": "#2ca02c",
    "underfit": "#7f7f7f",
    "forgetting": "#ff7f0e",
    "collapse": "#d62728",
}

Metric = Callable[[SweepRowOut], Effect]
"""A row's (value, ci_low, ci_high) for one panel."""

# (the row's value, panel title, reference line: value meaning "no change", or None);
# None as the value: the collapse panel (empty outputs and repetition together)
PANELS: tuple[tuple[Metric | None, str, float | None], ...] = (
    (lift_of, "in-domain lift (target metric)", 0.0),
    (ood_of, "out-of-domain delta (negative = forgetting)", 0.0),
    (lambda r: (r.hallucination_change, None, None), "hallucination change (positive = more)", 0.0),
    (lambda r: (r.perplexity_ratio, None, None), "held-out perplexity ratio", 1.0),
    (None, "empty outputs / repetition", None),
)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _point(row: SweepRowOut, metric: Metric) -> Effect:
    """(value, ci_low, ci_high) of a row's metric, the interval only where there is one."""
    effect, low, high = metric(row)
    return _finite(effect), _finite(low), _finite(high)


def _rate(row: SweepRowOut) -> float:
    assert row.learning_rate is not None  # _rows keeps only rows with a finite rate
    return row.learning_rate


def _rows(sweep: SweepOut) -> list[SweepRowOut]:
    return sorted((r for r in sweep.rows if _finite(r.learning_rate) is not None), key=_rate)


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", transform=ax.transAxes, ha="center", color="#888888")


def _metric_panel(
    ax: Axes, rows: Sequence[SweepRowOut], metric: Metric, zero: float | None
) -> None:
    """One metric against the rate: ``o`` = gate passed, ``X`` = failed; colour = label."""
    for row in rows:
        lr = _rate(row)
        colour = LABEL_COLOURS.get(str(row.label), "#1f77b4")
        marker = "o" if row.verdict == "pass" else "X"
        value, low, high = _point(row, metric)
        if value is None:
            continue
        if low is not None and high is not None:
            yerr = [[max(value - low, 0.0)], [max(high - value, 0.0)]]
            ax.errorbar([lr], [value], yerr=yerr, fmt=marker, color=colour, capsize=4)
        else:
            ax.plot([lr], [value], marker, color=colour)
    points = [(_rate(r), y) for r in rows if (y := _point(r, metric)[0]) is not None]
    if not points:
        _no_data(ax, "data")
    if len(points) > 1:
        ax.plot(*zip(*points, strict=True), "-", color="#bbbbbb", zorder=0)
    if zero is not None:
        ax.axhline(zero, color="black", linewidth=0.8, linestyle=":")


def _collapse_panel(ax: Axes, rows: Sequence[SweepRowOut]) -> None:
    signals: tuple[tuple[str, str, Callable[[SweepRowOut], float | None]], ...] = (
        ("empty_output", "s", lambda r: r.empty_output),
        ("repetition", "^", lambda r: r.repetition),
    )
    for name, marker, value in signals:
        points = [(_rate(r), y) for r in rows if (y := _finite(value(r))) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, label=name)
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        _no_data(ax, "collapse threshold in the policy")


def _loss_panel(ax: Axes, rows: Sequence[SweepRowOut]) -> None:
    """Every candidate's loss curve, one colour per rate (low rates light, high rates dark)."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis_r"]
    for i, row in enumerate(rows):
        points = [(p.step, y) for p in row.training_log if (y := _finite(p.loss)) is not None]
        if points:
            colour = cmap(0.15 + 0.75 * i / max(len(rows) - 1, 1))
            ax.plot(
                *zip(*points, strict=True),
                label=f"lr {_rate(row):g}",
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


def sweep_chart(sweep: SweepOut, path: Path) -> Path:
    """Draw the sweep chart to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = _rows(sweep)
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    flat = list(axes.flat)
    recommended = _finite(sweep.recommended_rate)
    for ax, (metric, title, zero) in zip(flat, PANELS, strict=False):
        if metric is None:
            _collapse_panel(ax, rows)
        else:
            _metric_panel(ax, rows, metric, zero)
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
    fig.suptitle(f"sweep {sweep.family}/{sweep.sweep}")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
