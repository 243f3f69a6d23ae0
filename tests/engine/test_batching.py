"""The auto batch: measured on the real prompts, bounded by memory and the cap, cached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.engine import batching
from service.engine.batching import BatchSizer, best_batch, probe_generation_batch
from service.engine.generation import encode_prompts, generate
from service.engine.loading import LoadedModel, ModelPool
from service.settings import Settings

PROMPTS = [
    "What is the capital of France?",
    "hi",
    "Tell me a long story about a dragon and a knight who met in the mountains",
    "2+2=",
    "The quick brown fox",
    "Write a haiku about autumn leaves falling on a quiet pond at dawn",
    "Why?",
    "Name three rivers in Africa and the countries they flow through",
    "ok",
]


@pytest.fixture(scope="module")
def context_model(context_model_dir: Path) -> Iterator[LoadedModel]:
    pool = ModelPool(device="cpu")
    with pool.acquire(context_model_dir) as loaded:
        yield loaded


def test_best_batch_follows_the_fitted_step_cost() -> None:
    # t(b) = 0.05 + 0.05 b: doubling gains >= 15 % only up to b = 5.67 → 4
    assert best_batch({1: 0.1, 4: 0.25, 32: 1.65}, upper=256, min_gain=1.15) == 4
    # a step that barely grows with rows (a GPU far from busy): as large as allowed
    assert best_batch({1: 0.02, 4: 0.02, 32: 0.021}, upper=256, min_gain=1.15) == 256
    assert best_batch({1: 0.02, 4: 0.02, 32: 0.021}, upper=48, min_gain=1.15) == 48
    # pure per-row cost: batching never pays
    assert best_batch({1: 0.1, 4: 0.4, 32: 3.2}, upper=256, min_gain=1.15) == 1
    assert best_batch({1: 0.1}, upper=8, min_gain=1.15) == 1


def test_probe_is_quick_capped_and_cached(context_model: LoadedModel) -> None:
    encoded = encode_prompts(context_model.tokenizer, PROMPTS, chat_template=True)
    choice = probe_generation_batch(context_model, encoded, max_new_tokens=8)
    assert 1 <= choice.batch_size <= batching.DEFAULT_MAX_BATCH
    assert set(choice.tokens_per_second) == {1, 4, 32}
    assert all(rate > 0 for rate in choice.tokens_per_second.values())
    assert choice.seconds < 30
    capped = probe_generation_batch(context_model, encoded, max_new_tokens=8, cap=2)
    assert capped.batch_size <= 2
    assert set(capped.tokens_per_second) == {1, 2}

    sizer = BatchSizer(cap=3)
    first = sizer.for_generation(context_model, encoded, 8)
    again = sizer.for_generation(context_model, encoded[:2], 8)
    assert again is first
    assert sizer.probes == 1
    assert first.batch_size <= 3
    assert sizer.rows(context_model) == first.batch_size


def test_memory_bounds_the_batch(
    context_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = encode_prompts(context_model.tokenizer, PROMPTS, chat_template=True)
    longest = max(len(ids) for ids in encoded)
    per_row = batching.row_bytes(context_model.model, context_model.dtype, longest, 8)
    # room for 3 rows at the 50 % budget
    monkeypatch.setattr(batching, "free_memory_bytes", lambda device: int(per_row * 6.5))
    choice = probe_generation_batch(context_model, encoded, max_new_tokens=8, min_gain=1.0001)
    assert choice.memory_rows == 3
    assert choice.batch_size <= 3
    assert max(choice.tokens_per_second) <= 3


def test_outputs_do_not_depend_on_the_auto_batch(context_model: LoadedModel) -> None:
    encoded = encode_prompts(context_model.tokenizer, PROMPTS, chat_template=True)
    chosen = probe_generation_batch(context_model, encoded, max_new_tokens=10).batch_size
    one = generate(context_model, PROMPTS, max_new_tokens=10, batch_size=1)
    for size in {chosen, len(PROMPTS)}:
        assert generate(context_model, PROMPTS, max_new_tokens=10, batch_size=size) == one
    assert len({o.text for o in one}) > 1


def test_batch_size_setting_is_auto_or_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().batch_size is None
    monkeypatch.setenv("TUNEGATE_BATCH_SIZE", "auto")
    assert Settings().batch_size is None
    monkeypatch.setenv("TUNEGATE_BATCH_SIZE", "12")
    assert Settings().batch_size == 12
