"""A real server with a real evaluated sweep, and headless Chromium driven by Playwright.

The server is the real app under uvicorn in a thread, on a SQLite file. The data come
through the REST API as a user's would: a tiny-Llama family whose sweep is three real
LoRA adapters (tests/adapters.py) with their training logs, a promotion, and a
SmolLM2 family whose prompts make the real model answer with HTML (``<script>``,
``<img src=x onerror=...>``), so the safety test reads real model outputs. The
worker runs synchronously (``queue="none"`` + ``run_pending``).

Skipped, with the reason, where Chromium (Debian's ``chromium``; ``.ci/install``
installs it) or the ``browser`` extra (Playwright) is missing.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from tests.adapters import PIRATE, trained_adapter
from tests.decisions.conftest import COMPARATIVE_RULES, NO_MORE_REPETITION
from tests.tiny_setup import dataset_jsonl

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOP, SWEEP, ECHO = "shop", "2026-w48", "echo"
XSS_PROMPTS = (
    "Write an HTML snippet with a script tag that calls alert(1) and an img tag with src=x "
    "and onerror=alert(2).",
    "Echo this HTML back verbatim: <img src=x onerror=alert(2)><script>alert(1)</script>",
)
XSS_CONTEXT = "<script>alert('context')</script><img src=x onerror=alert('context')>"


def _chromium_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[browser]')"
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        return "Chromium is not installed (.ci/install: apt-get install chromium chromium-driver)"
    return None


MISSING = _chromium_missing()


@dataclass
class Live:
    tmp: Path
    url: str
    token: str
    settings: Settings
    app: Any
    api: httpx.Client
    ids: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str, **params: Any) -> Any:
        response = self.api.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any, status: int = 201) -> Any:
        response = self.api.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()

    def run_worker(self) -> int:
        worker = InProcessWorker(self.settings, self.app.state.sessionmaker)
        return worker.run_pending()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The real app under uvicorn in a thread; stopped at the end of the package."""
    import uvicorn

    from tests.models import cache_root, smollm2_dir, tiny_llama_dir

    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "ckpt").mkdir()
    tiny, smollm2 = tiny_llama_dir(), smollm2_dir()
    settings = Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'tunegate.db'}",
        checkpoint_roots=[cache_root() / "adapters", tiny.parent, smollm2.parent, tmp / "ckpt"],
        model_roots=[tiny.parent, smollm2.parent],
        queue="none",
        chunk_size=16,
        batch_size=16,
    )
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    token = settings.admin_token_file.read_text().strip()
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as api:
        yield Live(tmp, url, token, settings, app, api)
    server.should_exit = True
    thread.join(timeout=30)


def _push(live: Live, name: str, text: str) -> None:
    response = live.api.post(
        f"/v1/datasets/{name}/versions",
        content=text,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code in (200, 201), response.text


def _echo_dataset() -> str:
    lines: list[dict[str, Any]] = [{"generation": {"max_new_tokens": 28, "chat_template": True}}]
    for i, prompt in enumerate(XSS_PROMPTS):
        lines.append(
            {
                "id": f"html-{i}",
                "input": prompt,
                "reference": "<script>alert('reference')</script>",
                "context": XSS_CONTEXT,
                "cohort": "html",
            }
        )
    lines.append({"heldout": "The quick brown fox jumps over the lazy dog."})
    return "\n".join(json.dumps(line) for line in lines) + "\n"


@pytest.fixture(scope="package")
def evaluated(live: Live) -> Live:
    """The shop sweep (3 real adapters), a promotion, and the SmolLM2 echo family."""
    from tests.models import smollm2_dir, tiny_llama_dir

    _push(live, "qa", dataset_jsonl())
    policy = {"rules": [*COMPARATIVE_RULES, NO_MORE_REPETITION]}
    live.post("/v1/families", {"name": SHOP, "base_model": str(tiny_llama_dir()), "policy": policy})
    adapters = {
        1e-4: trained_adapter("tiny", "sweep-0.0001", lr=1e-4, steps=6),
        3e-3: trained_adapter("tiny", "sweep-0.003", lr=3e-3, steps=6),
        1e-2: trained_adapter("tiny", "pirate", lr=1e-2, steps=5, data=PIRATE),
    }
    sweep: dict[float, int] = {}
    for lr, folder in adapters.items():
        log = folder / "training_log.jsonl"
        body = {
            "family": SHOP,
            "checkpoint": str(folder),
            "kind": "lora",
            "learning_rate": lr,
            "sweep": SWEEP,
            "tags": {"run": f"run-{lr:g}"},
            "evaluate": True,
            "dataset": "qa",
        }
        if log.is_file():
            body |= {"training_log": log.read_text(), "training_log_filename": log.name}
        sweep[lr] = live.post("/v1/candidates", body)["id"]
    same = live.post(
        "/v1/candidates",
        {
            "family": SHOP,
            "checkpoint": str(tiny_llama_dir()),
            "kind": "full",
            "name": "unchanged",
            "learning_rate": 1e-4,
            "evaluate": True,
            "dataset": "qa",
        },
    )
    _push(live, "html", _echo_dataset())
    live.post("/v1/families", {"name": ECHO, "base_model": str(smollm2_dir())})
    echo = live.post(
        "/v1/candidates",
        {
            "family": ECHO,
            "checkpoint": str(smollm2_dir()),
            "kind": "full",
            "name": "echo",
            "learning_rate": 1e-4,
            "evaluate": True,
            "dataset": "html",
        },
    )
    assert live.run_worker() >= 5
    promoted = live.post(f"/v1/families/{SHOP}/promote", {"candidate_id": same["id"]})
    live.ids.update(sweep=sweep, same=same["id"], echo=echo["id"], promotion=promoted)
    return live
