"""A real embedded tunegate server (uvicorn on a free port, SQLite, in-process worker) and
helpers to run the real ``tunegate`` entry point against it in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.cli.embedded import EmbeddedServer
from service.settings import Settings
from tests.adapters import trained_adapter
from tests.models import tiny_llama_dir

TUNEGATE = str(Path(sys.executable).with_name("tunegate"))

QUESTIONS = (
    "What is the capital of France?",
    "Name a colour of the sky.",
    "How many legs does a cat have?",
    "What do bees make?",
    "What is two plus two?",
    "Which animal barks?",
)
TICKETS = (
    "Triage: I was charged twice.",
    "Triage: my parcel is late.",
    "Triage: I cannot log in.",
    "Triage: the kettle will not turn on.",
    "Triage: I want to return my lamp.",
    "Triage: please change my invoice address.",
)
REFERENCES = ("Paris.", "Blue.", "Four.", "Honey.", "Four.", "A dog.")

# Relative rules only: the tiny random Llama answers nothing useful (its greedy answers decode
# to empty text), so absolute thresholds would judge the model, not the change. An identical
# candidate passes; an adapter that loops ("ho ho ho ...") regresses on repetition.
TEST_POLICY = """
rules:
  - kind: no_regression
    metric: repetition
    tolerance: 0.1
  - kind: no_regression
    metric: token_f1
    domain: out
    tolerance: 0.1
  - kind: perplexity_ratio
    max_ratio: 1.5
"""


def dataset_jsonl() -> str:
    lines: list[dict[str, object]] = [{"generation": {"max_new_tokens": 12, "chat_template": True}}]
    lines += [
        {"id": f"t{i}", "input": t, "reference": "Queue: billing", "domain": "in"}
        for i, t in enumerate(TICKETS)
    ]
    lines += [
        {"id": f"q{i}", "input": q, "reference": r, "domain": "out"}
        for i, (q, r) in enumerate(zip(QUESTIONS, REFERENCES, strict=True))
    ]
    lines += [{"heldout": "The cat sat on the mat and looked at the rain outside."}]
    lines += [{"heldout": "Trains leave the station every ten minutes in the morning."}]
    return "\n".join(json.dumps(line) for line in lines) + "\n"


@dataclass(frozen=True)
class LiveServer:
    url: str
    token: str
    settings: Settings
    checkpoints: Path
    tiny: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a ``tunegate`` subprocess talking to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEGATE_")}
        env |= {"TUNEGATE_URL": self.url, "TUNEGATE_TOKEN": self.token, "HF_HUB_OFFLINE": "1"}
        env |= {"TUNEGATE_DATA_DIR": str(self.settings.resolved_data_dir / "client-side")}
        return env | extra


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``tunegate`` script, as CI would."""
    return subprocess.run(
        [TUNEGATE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A served app with the dataset ``ds`` and the family ``tiny`` (base: the tiny Llama)."""
    with serve(tmp_path_factory.mktemp("live"), queue="inprocess") as live:
        yield live


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The same, without a worker: what it queues stays queued (until cancelled)."""
    with serve(tmp_path_factory.mktemp("idle"), queue="none") as live:
        yield live


@contextmanager
def serve(root: Path, queue: str) -> Iterator[LiveServer]:
    """An embedded server on ``root`` with ``ds`` pushed and ``tiny`` created, through the CLI."""
    tiny = tiny_llama_dir()
    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    settings = Settings(
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'tunegate.db'}",
        checkpoint_roots=[checkpoints],
        model_roots=[tiny.parent],
        queue=queue,
        batch_size=12,
    )
    with EmbeddedServer(settings) as server:
        live = LiveServer(server.url, server.admin_token, settings, checkpoints, tiny)
        policy = root / "policy.yaml"
        policy.write_text(TEST_POLICY)
        data = root / "ds.jsonl"
        data.write_text(dataset_jsonl())
        for args in (
            ("dataset", "push", "ds", str(data)),
            ("family", "create", "tiny", "--base", str(tiny), "--policy", str(policy)),
        ):
            result = run_cli(*args, env=live.env())
            assert result.returncode == 0, result.stderr
        yield live


@pytest.fixture(scope="module")
def full_copy(live_server: LiveServer) -> Path:
    """The base model itself, submitted as a full fine-tune: nothing changed, nothing regressed."""
    target = live_server.checkpoints / "tiny-copy"
    if not target.exists():
        shutil.copytree(live_server.tiny, target)
    return target


ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def looping_adapter(live_server: LiveServer) -> Path:
    """A real LoRA trained hard to answer every prompt with "ho ho ho ...": a collapse."""
    trained = trained_adapter(
        "tiny",
        "looping",
        lr=2e-2,
        steps=40,
        data=[(q, "ho " * 12) for q in QUESTIONS + TICKETS],
        target_modules=ALL_LINEAR,
    )
    target = live_server.checkpoints / "looping"
    if not target.exists():
        shutil.copytree(trained, target)
    return target


@pytest.fixture(scope="module")
def fresh_adapter_copy(live_server: LiveServer, fresh_adapter: Path) -> Path:
    """A LoRA saved before any training step (B = 0): it changes nothing, so its
    evaluation fails with AdapterNotApplied."""
    target = live_server.checkpoints / "fresh"
    if not target.exists():
        shutil.copytree(fresh_adapter, target)
    return target
