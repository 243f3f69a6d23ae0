"""Fixtures for the engine and job tests: the tiny Llama, a context-sensitive twin, real
adapters, settings with small chunks, and an in-process worker on the test app.

The tiny Llama ties its embeddings, so greedy decoding from random weights just
repeats the last prompt token, which would make batched-vs-single comparisons
pass even with broken padding. ``context_model_dir`` is the same architecture
with an untied output layer and larger initial weights: its greedy output
depends on the whole prompt, so a wrong attention mask or position id shows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from tests import models
from tests.adapters import PIRATE, trained_adapter
from tests.tiny_setup import model_settings


@pytest.fixture(scope="session")
def context_model_dir(tiny_base: Path) -> Path:
    target = models.cache_root() / "models" / "tiny-llama-untied"
    if (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(tiny_base)
    config.tie_word_embeddings = False
    config.initializer_range = 0.2
    torch.manual_seed(1)
    tmp = target.with_name(".tiny-llama-untied-tmp")
    LlamaForCausalLM(config).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(tmp)
    tmp.rename(target)
    return target


@pytest.fixture(scope="session")
def adapter_a() -> Path:
    """Tiny Llama LoRA trained 5 real steps on capital-city Q&A."""
    return trained_adapter("tiny", "capitals", lr=1e-2, steps=5)


@pytest.fixture(scope="session")
def adapter_b() -> Path:
    """A second tiny Llama LoRA, other data and seed."""
    return trained_adapter("tiny", "pirate", lr=2e-2, steps=5, data=PIRATE, seed=1)


@pytest.fixture
def cache_root() -> list[Path]:
    """The allowed root that holds the cached test models and adapters."""
    return [models.cache_root()]


@pytest.fixture
def settings(  # overrides the root fixture: models and adapters under real roots
    tmp_path: Path, db_url: str, tiny_base: Path, adapters_root: Path
) -> Settings:
    """Small chunks (3) and batches (4), so a job's resumable steps show in a short run."""
    return model_settings(
        tmp_path,
        db_url,
        checkpoint_roots=[adapters_root],
        model_roots=[tiny_base.parent],
        chunk_size=3,
        batch_size=4,
    )


@pytest.fixture
def worker(client: TestClient) -> InProcessWorker:
    """An in-process worker on the app's settings and database: it runs what the API queued."""
    app = client.app
    return InProcessWorker(app.state.settings, app.state.sessionmaker)  # type: ignore[attr-defined]


@pytest.fixture
def submit_and_run(
    submit: Callable[..., dict[str, Any]], worker: InProcessWorker
) -> Callable[..., dict[str, Any]]:
    """``submit`` a checkpoint, then run the queue: its baseline and its own evaluation
    (asserted: two jobs ran). Returns the submission."""

    def run(checkpoint: Path, **kw: Any) -> dict[str, Any]:
        submitted = submit(checkpoint, **kw)
        assert worker.run_pending() == 2  # the baseline, then the candidate
        return submitted

    return run
