"""The demo's fine-tunes: one LoRA per learning rate, from the same start, on the same data.

Every rate starts from one freshly initialised adapter (``steps=0``: ``lora_B`` = 0, so the
start *is* the base model) and sees the batches in the same order (same seed), so the rate
is the only difference between the runs. Progress is read from each run's
``training_log.jsonl`` as it is written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from service.finetune import LOG_NAME, TrainResult, train_lora

StepCallback = Callable[[int], None]


def rate_dir_name(rate: float) -> str:
    return f"lr-{rate:.0e}".replace("+", "").replace("-0", "-")


def _watch_log(log_path: Path, on_step: StepCallback, stop: threading.Event) -> None:
    """Report the number of logged steps until ``stop`` is set (polls twice a second)."""
    last = -1
    while not stop.wait(0.5):
        try:
            steps = sum(1 for _ in log_path.open(encoding="utf-8"))
        except OSError:
            continue
        if steps != last:
            on_step(steps)
            last = steps


def train_rate(
    base_dir: Path,
    pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    *,
    rate: float,
    steps: int,
    init_adapter: Path,
    batch_size: int,
    warmup_steps: int,
    target_modules: Sequence[str],
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train one rate of the sweep into ``out_dir``; ``on_step(n)`` as steps are logged."""
    stop = threading.Event()
    watcher = None
    if on_step is not None:
        watcher = threading.Thread(
            target=_watch_log, args=(out_dir / LOG_NAME, on_step, stop), daemon=True
        )
        watcher.start()
    try:
        return train_lora(
            base_dir,
            pairs,
            out_dir,
            learning_rate=rate,
            steps=steps,
            seed=0,
            batch_size=batch_size,
            warmup_steps=warmup_steps,
            init_adapter_dir=init_adapter,
            target_modules=target_modules,
        )
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
        if on_step is not None:
            on_step(steps)


def initial_adapter(
    base_dir: Path,
    pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    target_modules: Sequence[str],
) -> Path:
    """The shared starting adapter (zero steps: ``lora_B`` = 0), created once."""
    if not (out_dir / "adapter_model.safetensors").is_file():
        train_lora(
            base_dir,
            pairs,
            out_dir,
            learning_rate=0.0,  # no step is taken
            steps=0,
            seed=0,
            target_modules=target_modules,
        )
    return out_dir
