"""Chat-format records through the real job: ``messages`` and the dataset-wide ``system``
prompt are rendered with the model's chat template, as a direct generation renders them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.engine.generation import encode_prompts, generate
from service.engine.job import run_evaluation
from service.engine.loading import ModelPool
from service.worker.inprocess import InProcessWorker

SYSTEM = "You are a terse assistant."
CHAT = [
    {"role": "user", "content": "Hi there."},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What is the capital of France?"},
]
OWN_SYSTEM = [
    {"role": "system", "content": "Answer in French."},
    {"role": "user", "content": "Name a colour."},
]


def test_messages_and_system_prompt_reach_the_model(
    client: TestClient,
    auth: dict[str, str],
    get: Callable[[str], Any],
    submit: Callable[..., dict[str, Any]],
    worker: InProcessWorker,
    tiny_base: Path,
    capitals_adapter: Path,
) -> None:
    rows = [
        {"generation": {"max_new_tokens": 4, "system": SYSTEM}},
        {"id": "chat", "messages": CHAT, "answers": ["Paris"]},
        {"id": "own", "messages": OWN_SYSTEM},
        {"id": "plain", "input": "What do bees make?", "reference": "Honey."},
    ]
    pushed = client.post(
        "/v1/datasets/chat/versions",
        content="\n".join(json.dumps(row) for row in rows),
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    assert pushed.status_code == 201, pushed.text
    assert client.post(
        "/v1/families", json={"name": "tiny", "base_model": str(tiny_base)}, headers=auth
    ).is_success
    evaluation_id = submit(capitals_adapter, lr=1e-2, dataset="chat")["evaluation_id"]
    assert run_evaluation(evaluation_id, worker.context) == "succeeded"

    detail = get(f"/v1/evaluations/{evaluation_id}")
    assert detail["config"]["system"] == SYSTEM
    assert detail["provenance"]["generation"]["system"] == SYSTEM
    results = get(f"/v1/evaluations/{evaluation_id}/results")
    stored = {row["example_key"]: row for row in results["items"]}
    prompts = [CHAT, OWN_SYSTEM, "What do bees make?"]
    with ModelPool(max_bases=1).acquire(tiny_base, adapter_dir=capitals_adapter) as loaded:
        expected = generate(loaded, prompts, max_new_tokens=4, system=SYSTEM)
        encoded = encode_prompts(loaded.tokenizer, prompts, chat_template=True, system=SYSTEM)
        texts = [loaded.tokenizer.decode(ids) for ids in encoded]
    assert SYSTEM in texts[0]
    assert "Hello." in texts[0]  # the whole conversation, not only the last turn
    assert "Answer in French." in texts[1]
    assert SYSTEM not in texts[1]  # a record's own system message wins
    assert SYSTEM in texts[2]
    for key, want, ids in zip(("chat", "own", "plain"), expected, encoded, strict=True):
        assert stored[key]["output"] == want.text
        assert stored[key]["n_prompt_tokens"] == len(ids)
