"""Training logs: parse a candidate's loss curve and say what it suggests about the learning rate.

Accepted formats: a Hugging Face ``trainer_state.json`` (its ``log_history``; entries
without ``loss``, i.e. evaluation and end-of-training summaries, are skipped) or JSONL with
one ``{"step", "loss", "learning_rate", "grad_norm"}`` object per line.

Diagnosis labels, in order of precedence. The loss curve gets exactly one of the first three
(or none); ``no_warmup`` is judged on the learning rate independently, so ``flags`` holds the
curve's label and/or ``no_warmup``, and ``label`` is the first of them:

1. ``diverged`` - a NaN/infinite loss; or the loss ends clearly above where it started
   (late-window mean > ``DIVERGED_FACTOR`` x the first logged loss); or a rising trend (late
   mean above the early mean and a significantly positive Spearman correlation with step).
2. ``oscillating`` - large swings (mean |relative step change| > ``SWING``, and the
   differences flip sign at least ``FLIP_RATE`` of the time) without real progress (relative
   decrease < ``PLATEAU_DECREASE`` or no significantly negative trend).
3. ``plateau`` - the early-to-late relative decrease is below ``PLATEAU_DECREASE``: the rate
   may be too low.
4. ``no_warmup`` - the loss looks healthy, but the learning rate at the first logged step is
   already >= ``WARMUP_PEAK_SHARE`` of the peak; it is also added as a secondary reason to
   any other label.
5. ``healthy``.

The early and late windows are the first and last fifth of the logged steps (at least 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

from service.errors import InvalidTrainingLog

DiagnosisLabel = Literal["diverged", "oscillating", "plateau", "no_warmup", "healthy"]

MIN_POINTS = 4
DIVERGED_FACTOR = 1.5
SWING = 0.15
FLIP_RATE = 0.5
PLATEAU_DECREASE = 0.05
WARMUP_PEAK_SHARE = 0.95
TREND_ALPHA = 0.05


@dataclass(frozen=True)
class LogPoint:
    """One logged training step."""

    step: int
    loss: float
    """May be NaN or infinite: a diverged run logs exactly that."""
    learning_rate: float | None = None
    grad_norm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON form: a NaN/infinite loss or grad norm becomes ``None``."""
        return {
            "step": self.step,
            "loss": self.loss if math.isfinite(self.loss) else None,
            "learning_rate": self.learning_rate,
            "grad_norm": _finite_or_none(self.grad_norm),
        }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class Diagnosis:
    """What the loss curve suggests, with the figures behind it (all finite floats)."""

    label: DiagnosisLabel
    figures: dict[str, float]
    reasons: list[str]
    flags: list[DiagnosisLabel] = field(default_factory=list)
    """The curve's label and/or ``no_warmup``, main one first: ``["plateau", "no_warmup"]``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


# --- parsing ----------------------------------------------------------------------------------


def _number(value: Any, name: str, where: str, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTrainingLog(f"{where}: '{name}' must be a number, got {value!r}")
    return float(value)


def _point(entry: Any, where: str) -> LogPoint | None:
    """A LogPoint from one log entry; None for evaluation/summary entries without a loss."""
    if not isinstance(entry, Mapping):
        raise InvalidTrainingLog(f"{where}: expected a JSON object, got {type(entry).__name__}")
    if "loss" not in entry:
        if any(str(key).startswith(("eval_", "train_", "test_")) for key in entry):
            return None
        raise InvalidTrainingLog(f"{where}: missing 'loss'")
    if "step" not in entry:
        raise InvalidTrainingLog(f"{where}: missing 'step'")
    step = _number(entry["step"], "step", where, optional=False)
    if step is None or step < 0 or not step.is_integer():
        raise InvalidTrainingLog(f"{where}: 'step' must be a non-negative integer")
    loss = _number(entry["loss"], "loss", where, optional=False)
    assert loss is not None
    return LogPoint(
        step=int(step),
        loss=loss,
        learning_rate=_finite_or_none(
            _number(entry.get("learning_rate"), "learning_rate", where, optional=True)
        ),
        grad_norm=_number(entry.get("grad_norm"), "grad_norm", where, optional=True),
    )


def _collect(entries: Iterable[tuple[str, Any]]) -> list[LogPoint]:
    points = [p for where, entry in entries if (p := _point(entry, where)) is not None]
    if not points:
        raise InvalidTrainingLog("the log has no step with a 'loss'")
    return sorted(points, key=lambda p: p.step)


def parse_training_log(text: str, filename: str | None = None) -> list[LogPoint]:
    """Parse a ``trainer_state.json`` or step JSONL into points sorted by step.

    Raises :class:`~service.errors.InvalidTrainingLog` naming the line (JSONL) or the
    ``log_history`` index and the reason.
    """
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if filename is not None and filename.endswith(".json"):
            raise InvalidTrainingLog(f"{filename} is not valid JSON: {exc}") from exc
        whole = None
    if isinstance(whole, Mapping) and "log_history" in whole:
        history = whole["log_history"]
        if not isinstance(history, list):
            raise InvalidTrainingLog("'log_history' must be a list")
        return _collect((f"log_history[{i}]", entry) for i, entry in enumerate(history))
    if isinstance(whole, list):
        return _collect((f"entry {i}", entry) for i, entry in enumerate(whole))
    if filename is not None and filename.endswith(".json"):
        raise InvalidTrainingLog(f"{filename} has no 'log_history' list (not a trainer_state.json)")
    return _collect(_jsonl_entries(text))


def _jsonl_entries(text: str) -> Iterable[tuple[str, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidTrainingLog(f"line {number}: not JSON ({exc.msg})") from exc


# --- diagnosis --------------------------------------------------------------------------------


def _trend(losses: np.ndarray[Any, np.dtype[np.float64]]) -> tuple[float, float]:
    """Spearman rho and two-sided p of loss against step order; (0, 1) for a flat loss."""
    if np.ptp(losses) == 0.0:
        return 0.0, 1.0
    result = stats.spearmanr(np.arange(losses.size), losses)
    return float(result.statistic), float(result.pvalue)


def _warmup(points: list[LogPoint]) -> tuple[dict[str, float], str | None]:
    rates = [(p.step, p.learning_rate) for p in points if p.learning_rate is not None]
    rates = [(step, lr) for step, lr in rates if math.isfinite(lr)]
    if len(rates) < 2:
        return {}, None
    first_step, first_lr = rates[0]
    peak_lr = max(lr for _, lr in rates)
    figures = {"first_lr": first_lr, "peak_lr": peak_lr}
    if peak_lr <= 0 or first_lr < WARMUP_PEAK_SHARE * peak_lr:
        return figures, None
    reason = (
        f"learning rate at the first logged step ({first_step}) is already the peak {peak_lr:g}"
    )
    if first_step > 1:
        reason += " (log from step 1 to tell a warmup apart)"
    return figures, reason


def diagnose(points: list[LogPoint]) -> Diagnosis:
    """Diagnose a loss curve (see the module docstring for the labels and their precedence).

    Raises :class:`~service.errors.InvalidTrainingLog` when fewer than ``MIN_POINTS`` steps
    with a finite loss are logged and none is NaN/infinite: too little to judge.
    """
    losses = np.array([p.loss for p in points], dtype=np.float64)
    figures: dict[str, float] = {"n_points": float(len(points))}
    if points:
        figures |= {"first_step": float(points[0].step), "last_step": float(points[-1].step)}
    warmup_figures, warmup_reason = _warmup(points)
    figures |= warmup_figures
    flags: list[DiagnosisLabel] = []
    reasons: list[str] = []

    finite = np.isfinite(losses)
    if not finite.all():
        first_bad = points[int(np.argmin(finite))]
        figures |= {"nonfinite_count": float(np.count_nonzero(~finite))}
        figures |= {"first_nonfinite_step": float(first_bad.step)}
        if finite.any():
            figures["max_finite_loss"] = float(np.max(losses[finite]))
        flags.append("diverged")
        reasons.append(f"loss is {first_bad.loss} at step {first_bad.step}")
    elif len(points) < MIN_POINTS:
        raise InvalidTrainingLog(
            f"a diagnosis needs at least {MIN_POINTS} logged steps with a loss; got {len(points)}"
        )
    else:
        curve_label, curve_reason, curve_figures = _curve(losses)
        flags += [curve_label] if curve_label else []
        reasons.append(curve_reason)
        figures |= curve_figures
    if warmup_reason is not None:
        flags.append("no_warmup")
        reasons.append(warmup_reason)
    label: DiagnosisLabel = flags[0] if flags else "healthy"
    return Diagnosis(label=label, figures=figures, reasons=reasons, flags=flags)


def _curve(
    losses: np.ndarray[Any, np.dtype[np.float64]],
) -> tuple[DiagnosisLabel | None, str, dict[str, float]]:
    """The curve's label (None = healthy), its reason and the figures, for a finite loss
    curve of at least MIN_POINTS steps. Checked in precedence order; the first match wins."""
    window = max(2, losses.size // 5)
    early, late = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    scale = max(abs(early), 1e-12)
    decrease = (early - late) / scale
    rho, p_trend = _trend(losses)
    steps = np.diff(losses)
    previous = np.maximum(np.abs(losses[:-1]), 1e-12)
    swing = float(np.mean(np.abs(steps) / previous))
    signs = np.sign(steps[steps != 0])
    flip_rate = float(np.mean(signs[1:] != signs[:-1])) if signs.size > 1 else 0.0
    figures = {
        "window": float(window),
        "first_loss": float(losses[0]),
        "early_mean": early,
        "late_mean": late,
        "max_loss": float(np.max(losses)),
        "relative_decrease": decrease,
        "spearman_rho": rho,
        "spearman_p": p_trend,
        "mean_abs_relative_change": swing,
        "sign_flip_rate": flip_rate,
    }
    first = float(losses[0])
    if late > DIVERGED_FACTOR * first and late > first:
        ratio = late / first if first > 0 else math.inf
        return "diverged", f"late-window loss {late:.4g} is {ratio:.3g}x the first", figures
    if late > early and rho > 0 and p_trend < TREND_ALPHA:
        return (
            "diverged",
            f"loss rises with step (Spearman rho {rho:.2f}, p={p_trend:.2g})",
            figures,
        )
    progressing = decrease >= PLATEAU_DECREASE and rho < 0 and p_trend < TREND_ALPHA
    if not progressing and swing > SWING and flip_rate >= FLIP_RATE:
        reason = (
            f"loss swings {swing:.0%} per step on average and changes direction "
            f"{flip_rate:.0%} of the time without a clear downward trend"
        )
        return "oscillating", reason, figures
    if decrease < PLATEAU_DECREASE:
        reason = (
            f"loss fell only {decrease:.1%} from the first to the last window "
            "(the learning rate may be too low)"
        )
        return "plateau", reason, figures
    return None, f"loss fell by {decrease:.0%} from the first to the last window", figures
