"""The real SmolLM2-135M-Instruct: one base load for the base and two trained adapters."""

from __future__ import annotations

import pytest

from service.checkpoints import check_adapter_matches_base, inspect_checkpoint, tensor_shapes
from service.engine.generation import generate
from service.engine.loading import ModelPool
from service.engine.probe import assert_adapter_changes_model
from tests import models
from tests.adapters import PIRATE, trained_adapter

PROMPTS = ["What is the capital of France?", "Name a colour.", "What is 2+2?", "Say hello."]


@pytest.mark.slow
def test_base_and_two_adapters_on_one_load() -> None:
    base_dir = models.smollm2_dir()
    adapter_a = trained_adapter("smollm2", "capitals", lr=2e-3, steps=5)
    adapter_b = trained_adapter("smollm2", "pirate", lr=2e-3, steps=5, data=PIRATE)
    info = inspect_checkpoint(adapter_b, [models.cache_root()], kind="lora")
    check_adapter_matches_base(
        info, tensor_shapes(base_dir), base_names=["HuggingFaceTB/SmolLM2-135M-Instruct"]
    )

    pool = ModelPool(device="cpu")
    with pool.acquire(base_dir) as base:
        base_out = generate(base, PROMPTS, max_new_tokens=24)
        single = [generate(base, [p], max_new_tokens=24)[0] for p in PROMPTS]
    assert base_out == single  # batching with left padding changes nothing
    assert "Paris" in base_out[0].text  # the real model, really answering
    assert any(o.n_new_tokens < 24 for o in base_out)  # stops at EOS

    with pool.acquire(base_dir, adapter_a) as a:
        probe_a = assert_adapter_changes_model(a)
        out_a = generate(a, PROMPTS, max_new_tokens=24)
    with pool.acquire(base_dir, adapter_b) as b:
        probe_b = assert_adapter_changes_model(b)
        out_b = generate(b, PROMPTS, max_new_tokens=24)
    with pool.acquire(base_dir) as base_again:
        assert generate(base_again, PROMPTS, max_new_tokens=24) == base_out

    assert pool.base_loads == 1
    assert pool.adapter_loads == 2
    assert probe_a.max_abs_delta > 1e-3
    assert probe_b.max_abs_delta > 1e-3
    assert out_b != base_out  # the pirate adapter visibly changes the answers
    assert out_a != out_b
