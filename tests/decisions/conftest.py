"""Fixtures for the decision, promotion and sweep tests, driven through the API with the
tiny Llama and real adapters (``make_family`` and ``submit`` come from the root conftest).

The base model's own folder is also a checkpoint root, so the base can be submitted as a
``full`` candidate (the noise control). One set of evaluators is shared by every
worker of the session: their models are loaded once, not once per test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.engine.scoring import EvaluatorSet
from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from tests.adapters import trained_adapter
from tests.tiny_setup import model_settings

COMPARATIVE_RULES: list[dict[str, Any]] = [
    {"kind": "no_regression", "metric": "relevance", "domain": "in", "tolerance": 0.03},
    {"kind": "no_regression", "metric": "relevance", "domain": "out", "tolerance": 0.03},
    {"kind": "no_regression", "metric": "hallucination", "domain": "in", "tolerance": 0.05},
    {"kind": "no_regression", "metric": "hallucination", "domain": "out", "tolerance": 0.05},
    {"kind": "out_of_domain_delta", "metric": "relevance_reference", "tolerance": 0.03},
    {"kind": "perplexity_ratio", "metric": "perplexity_word", "max_ratio": 1.10},
]
"""The shipped policy's comparative rules, without its absolute collapse thresholds: the
random tiny Llama answers every prompt with an empty string, so it fails those itself."""
COMPARATIVE_POLICY: dict[str, Any] = {"rules": COMPARATIVE_RULES}
NO_MORE_REPETITION: dict[str, Any] = {
    "kind": "no_regression",
    "metric": "repetition",
    "domain": "all",
    "tolerance": 0.1,
}
"""Fails a candidate that loops (the pirate adapter answers "KB KB KB KB KB KB")."""


@pytest.fixture(scope="session")
def sweep_adapters(adapters_root: Path, pirate_adapter: Path) -> dict[float, Path]:
    """One sweep, learning rate → adapter (each folder holds its ``training_log.jsonl``).

    Two capitals runs (1e-4: nothing learnt; 3e-3) and the pirate run at 1e-2, which
    learnt to loop: the sweep shows an underfit and a collapsed candidate.
    """
    return {
        1e-4: trained_adapter("tiny", "sweep-0.0001", lr=1e-4, steps=6),
        3e-3: trained_adapter("tiny", "sweep-0.003", lr=3e-3, steps=6),
        1e-2: pirate_adapter,
    }


@pytest.fixture
def settings(tmp_path: Path, db_url: str, tiny_base: Path, adapters_root: Path) -> Settings:
    """Adapters and the base model's own folder are checkpoint roots (base as a full model)."""
    return model_settings(
        tmp_path,
        db_url,
        checkpoint_roots=[adapters_root, tiny_base.parent],
        model_roots=[tiny_base.parent],
        chunk_size=16,
        batch_size=16,
    )


_EVALUATORS: dict[tuple[str, ...], EvaluatorSet] = {}


@pytest.fixture
def run_worker(client: TestClient) -> Callable[[], int]:
    """Run every queued evaluation now (synchronously); returns how many ran."""
    app = client.app
    worker = InProcessWorker(app.state.settings, app.state.sessionmaker)  # type: ignore[attr-defined]
    worker.context.evaluator_sets = _EVALUATORS
    return worker.run_pending
