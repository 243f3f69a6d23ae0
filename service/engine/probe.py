"""The adapter-applied probe: catch the silent "adapter loaded but not applied" bug.

A LoRA adapter that was never injected, injected under another name, left
disabled, or saved before training (``lora_B`` still zero) evaluates exactly
like the base, and every score then looks plausible. Before an adapter's
evaluation is trusted, run a small fixed batch through the model with the
adapter active and with it disabled and require the logits to differ.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from service.engine.loading import LoadedModel
from service.errors import AdapterNotApplied

if TYPE_CHECKING:
    from service.engine.hf import CausalLM


PROBE_TEXTS: tuple[str, ...] = (
    "The capital of France is",
    "def add(a, b):\n    return",
    "Summarise in one sentence: the meeting moved to Tuesday because the room was booked.",
    '{"name": "Ada", "role":',
)
DEFAULT_EPSILON = 1e-6


@dataclass(frozen=True)
class ProbeResult:
    """How far the adapter moves the logits on the probe batch (over real tokens only)."""

    max_abs_delta: float
    mean_abs_delta: float
    n_tokens: int


def _logits(model: CausalLM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).logits.float()


#: The base's logits on a probe batch, by (base folder, probe texts): the adapters of one
#: base (a sweep's group) share them, computed once (the same pass, the same numbers).
BaseLogits = MutableMapping[tuple[str, tuple[str, ...]], torch.Tensor]


def measure_adapter_delta(
    loaded: LoadedModel,
    probe_texts: Sequence[str] = PROBE_TEXTS,
    *,
    base_logits: BaseLogits | None = None,
) -> ProbeResult:
    """Logit difference between ``loaded`` (adapter active) and the same model with it disabled.

    ``base_logits``: a memo of the disabled model's logits, for several adapters of one
    base loaded in one pool (keep it no longer than that). Raises ``AdapterNotApplied``
    when ``loaded`` carries no active adapter at all.
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    if loaded.adapter_name is None or not hasattr(model, "disable_adapter"):
        raise AdapterNotApplied("the model has no adapter to probe (it is a plain base model)")
    active = getattr(model, "active_adapter", None)
    if active != loaded.adapter_name:
        raise AdapterNotApplied(f"adapter {loaded.adapter_name!r} is not active ({active!r} is)")
    encoded = tokenizer(list(probe_texts), return_tensors="pt", padding=True)
    batch = {k: v.to(loaded.device) for k, v in encoded.items()}
    key = (str(loaded.base_dir), tuple(probe_texts))
    with torch.inference_mode():
        with_adapter = _logits(model, batch)
        without = base_logits.get(key) if base_logits is not None else None
        if without is None:
            with model.disable_adapter():
                without = _logits(model, batch)
            if base_logits is not None:
                base_logits[key] = without
    mask = batch["attention_mask"].bool()
    delta = (with_adapter - without).abs()[mask]
    return ProbeResult(
        max_abs_delta=float(delta.max()),
        mean_abs_delta=float(delta.mean()),
        n_tokens=int(mask.sum()),
    )


def assert_adapter_changes_model(
    loaded: LoadedModel,
    probe_texts: Sequence[str] = PROBE_TEXTS,
    *,
    epsilon: float = DEFAULT_EPSILON,
    base_logits: BaseLogits | None = None,
) -> ProbeResult:
    """Require the active adapter to move the logits by more than ``epsilon``.

    Returns the figures to record with the evaluation; raises
    ``AdapterNotApplied`` with them when the adapter changes nothing (or the
    difference is NaN).
    """
    result = measure_adapter_delta(loaded, probe_texts, base_logits=base_logits)
    if not result.max_abs_delta > epsilon:  # NaN fails too
        raise AdapterNotApplied(
            f"adapter {loaded.adapter_name!r} does not change the model: max |Δlogit| = "
            f"{result.max_abs_delta:.3g}, mean = {result.mean_abs_delta:.3g} over "
            f"{result.n_tokens} probe tokens (epsilon {epsilon:g})"
        )
    return result
