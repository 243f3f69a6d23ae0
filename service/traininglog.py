"""Training logs: parse a candidate's loss curve and say what it suggests about the learning rate.

Accepted formats: a Hugging Face ``trainer_state.json`` (its ``log_history``; entries
without ``loss``, i.e. evaluation and end-of-training summaries, are skipped) or JSONL with
one ``{"step", "loss", "learning_rate", "grad_norm"}`` object per line.

The headline ``label`` is the loss curve's class, in order of precedence:

1. ``diverged`` - a NaN/infinite loss; or the loss ends clearly above where it started
   (late-window mean > ``DIVERGED_FACTOR`` x the first logged loss); or a rising trend (late
   mean above the early mean and a significantly positive Spearman correlation with step).
2. ``oscillating`` - judged on the loss's *relative* (log-scale) jumps, since a loss near
   0.02 that leaps to 1.0 is a 50x jump however small it looks in absolute terms: either in
   the last ``LATE_STEPS`` steps the loss leaps up *and* back down by more than
   ``LEAP_FACTOR`` x at least ``LEAPS`` times each (unstable even if it fell a lot before),
   or over the whole run the mean |log step change| exceeds ``log(1 + SWING)`` with the
   direction flipping at least ``FLIP_RATE`` of the time and no real progress.
3. ``plateau`` - the early-to-late relative decrease is below ``PLATEAU_DECREASE``: the rate
   may be too low.
4. ``healthy``.

``no_warmup`` is a *note* beside the label (``notes``), never the headline: the learning
rate at the first logged step is already >= ``WARMUP_PEAK_SHARE`` of the peak. A constant
rate with a healthy curve is ``healthy`` with that note. ``flags`` lists the curve's class
(unless healthy) and the notes, for filtering.

The early and late windows are the first and last fifth of the logged steps (at least 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from service.errors import InvalidTrainingLog
from service.jsontypes import JSONObject

DiagnosisLabel = Literal["diverged", "oscillating", "plateau", "healthy"]
Flag = Literal["diverged", "oscillating", "plateau", "no_warmup"]

MIN_POINTS = 4
DIVERGED_FACTOR = 1.5
SWING = 0.15
FLIP_RATE = 0.5
PLATEAU_DECREASE = 0.05
WARMUP_PEAK_SHARE = 0.95
TREND_ALPHA = 0.05
LATE_STEPS = 10
LEAP_FACTOR = 2.0
LEAPS = 2


@dataclass(frozen=True)
class LogPoint:
    """One logged training step."""

    step: int
    loss: float
    """May be NaN or infinite: a diverged run logs exactly that."""
    learning_rate: float | None = None
    grad_norm: float | None = None

    def to_dict(self) -> JSONObject:
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
    """The loss curve's class: the headline."""
    figures: dict[str, float]
    reasons: list[str]
    flags: list[Flag] = field(default_factory=list)
    """The curve's class (unless healthy) and the notes: ``["plateau", "no_warmup"]``."""
    notes: list[Literal["no_warmup"]] = field(default_factory=list)
    """Findings beside the headline, e.g. ``no_warmup``."""

    def to_dict(self) -> JSONObject:
        """JSON-serialisable form."""
        return asdict(self)


# --- parsing ----------------------------------------------------------------------------------


def _number(value: object, name: str, where: str, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTrainingLog(f"{where}: '{name}' must be a number, got {value!r}")
    return float(value)


def _point(entry: object, where: str) -> LogPoint | None:
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


def _collect(entries: Iterable[tuple[str, object]]) -> list[LogPoint]:
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


def _jsonl_entries(text: str) -> Iterable[tuple[str, object]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidTrainingLog(f"line {number}: not JSON ({exc.msg})") from exc


# --- diagnosis --------------------------------------------------------------------------------


def _trend(losses: NDArray[np.float64]) -> tuple[float, float]:
    """Spearman rho and two-sided p of loss against step order; (0, 1) for a flat loss."""
    if np.ptp(losses) == 0.0:
        return 0.0, 1.0
    # imported here: the CLI imports this module (through the API schemas), and scipy.stats
    # would add half a second to every `tunegate` command
    from scipy import stats

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
    flags: list[Flag] = []
    reasons: list[str] = []
    label: DiagnosisLabel = "healthy"

    finite = np.isfinite(losses)
    if not finite.all():
        first_bad = points[int(np.argmin(finite))]
        figures |= {"nonfinite_count": float(np.count_nonzero(~finite))}
        figures |= {"first_nonfinite_step": float(first_bad.step)}
        if finite.any():
            figures["max_finite_loss"] = float(np.max(losses[finite]))
        flags.append("diverged")
        label = "diverged"
        reasons.append(f"loss is {first_bad.loss} at step {first_bad.step}")
    elif len(points) < MIN_POINTS:
        raise InvalidTrainingLog(
            f"a diagnosis needs at least {MIN_POINTS} logged steps with a loss; got {len(points)}"
        )
    else:
        curve_label, curve_reason, curve_figures = _curve(losses)
        if curve_label is not None:
            flags.append(curve_label)
            label = curve_label
        reasons.append(curve_reason)
        figures |= curve_figures
    notes: list[Literal["no_warmup"]] = []
    if warmup_reason is not None:
        flags.append("no_warmup")
        notes.append("no_warmup")
        reasons.append(f"note: {warmup_reason}")
    return Diagnosis(label=label, figures=figures, reasons=reasons, flags=flags, notes=notes)


def _late_leaps(losses: NDArray[np.float64]) -> tuple[int, int]:
    """Upward and downward jumps by more than LEAP_FACTOR x in the last LATE_STEPS steps."""
    late = np.log(np.maximum(losses[-(LATE_STEPS + 1) :], 1e-12))
    steps = np.diff(late)
    leap = math.log(LEAP_FACTOR)
    return int(np.count_nonzero(steps > leap)), int(np.count_nonzero(steps < -leap))


def _curve(
    losses: NDArray[np.float64],
) -> tuple[Literal["diverged", "oscillating", "plateau"] | None, str, dict[str, float]]:
    """The curve's label (None = healthy), its reason and the figures, for a finite loss
    curve of at least MIN_POINTS steps. Checked in precedence order; the first match wins."""
    window = max(2, losses.size // 5)
    early, late = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    scale = max(abs(early), 1e-12)
    decrease = (early - late) / scale
    rho, p_trend = _trend(losses)
    log_steps = np.diff(np.log(np.maximum(losses, 1e-12)))
    swing = float(np.expm1(np.mean(np.abs(log_steps))))  # typical relative jump
    signs = np.sign(log_steps[log_steps != 0])
    ups, downs = _late_leaps(losses)
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
        "late_leaps_up": float(ups),
        "late_leaps_down": float(downs),
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
    if ups >= LEAPS and downs >= LEAPS:
        reason = (
            f"in the last {min(LATE_STEPS, losses.size - 1)} steps the loss leaps up more than "
            f"{LEAP_FACTOR:g}x {ups} times and falls back {downs} times (log-scale jumps)"
        )
        return "oscillating", reason, figures
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
