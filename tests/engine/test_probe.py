"""The adapter-applied probe: a trained adapter moves the logits, a fresh one does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.engine.loading import ModelPool
from service.engine.probe import (
    BaseLogits,
    assert_adapter_changes_model,
    measure_adapter_delta,
)
from service.errors import AdapterNotApplied


def test_trained_adapter_passes(tiny_base: Path, adapter_a: Path) -> None:
    pool = ModelPool(device="cpu")
    with pool.acquire(tiny_base, adapter_a) as loaded:
        result = assert_adapter_changes_model(loaded)
    assert result.max_abs_delta > 1e-3
    assert 0 < result.mean_abs_delta <= result.max_abs_delta
    assert result.n_tokens > 10


def test_adapters_of_one_base_share_its_probe_logits(
    tiny_base: Path, adapter_a: Path, adapter_b: Path
) -> None:
    pool = ModelPool(device="cpu")
    memo: BaseLogits = {}
    calls: list[int] = []
    for adapter, passes in ((adapter_a, 2), (adapter_b, 1)):  # the base's pass only once
        with pool.acquire(tiny_base, adapter) as loaded:
            alone = measure_adapter_delta(loaded)
            calls.clear()
            handle = loaded.model.register_forward_hook(lambda *_: calls.append(1))
            try:
                shared = measure_adapter_delta(loaded, base_logits=memo)
            finally:
                handle.remove()
        assert shared == alone  # the same numbers as a probe of its own
        assert len(calls) == passes
    assert len(memo) == 1


def test_fresh_adapter_is_caught(tiny_base: Path, fresh_adapter: Path) -> None:
    pool = ModelPool(device="cpu")
    with pool.acquire(tiny_base, fresh_adapter) as loaded:
        assert measure_adapter_delta(loaded).max_abs_delta == 0.0
        with pytest.raises(
            AdapterNotApplied, match=r"does not change the model: max \|Δlogit\| = 0"
        ):
            assert_adapter_changes_model(loaded)


def test_base_and_disabled_adapter_are_caught(tiny_base: Path, adapter_a: Path) -> None:
    pool = ModelPool(device="cpu")
    with pool.acquire(tiny_base) as plain:
        with pytest.raises(AdapterNotApplied, match="no adapter"):
            assert_adapter_changes_model(plain)
    with pool.acquire(tiny_base, adapter_a):
        pass
    with pool.acquire(tiny_base) as base, pytest.raises(AdapterNotApplied):
        assert_adapter_changes_model(base)  # wrapped, but this is the base: no adapter active
