"""Crashes under load: the API SIGKILLed mid-push, PostgreSQL connections killed mid-read.

- 40 concurrent dataset pushes, the server SIGKILLed while they run: after a
  restart every version a client was told about is stored whole (its examples
  all there), nothing partial is visible, and SQLite's ``PRAGMA integrity_check``
  says ``ok``.
- PostgreSQL backends terminated (``pg_terminate_backend``) under a read load:
  requests fail fast with 503 + Retry-After, never 500, and succeed on retry.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.faults.live import LiveServer
from tests.faults.load import client, read_burst

PUSHES = 40


def _dataset(i: int) -> bytes:
    lines = [json.dumps({"input": f"q{i}-{j}", "reference": f"a{j}"}) for j in range(200)]
    return ("\n".join(lines) + "\n").encode()


async def _push_all(url: str, headers: dict[str, str], kill: threading.Event) -> list[dict]:
    acknowledged: list[dict] = []

    async def push(i: int) -> None:
        try:
            response = await http.post(
                f"/v1/datasets/crash-{i}/versions",
                content=_dataset(i),
                headers={"Content-Type": "application/x-ndjson"},
            )
        except httpx.TransportError:
            return  # the server died before answering: not acknowledged
        if response.status_code in (200, 201):
            acknowledged.append({"name": f"crash-{i}", **response.json()})
        if len(acknowledged) >= PUSHES // 4:
            kill.set()

    async with client(url, headers, timeout=60) as http:
        await asyncio.gather(*(push(i) for i in range(PUSHES)))
    return acknowledged


def test_sigkill_during_pushes_loses_no_acknowledged_version(tmp_path: Path) -> None:
    database = tmp_path / "tunegate.db"
    server = LiveServer(tmp_path / "data", f"sqlite:///{database}")
    kill = threading.Event()
    with server:
        killer = threading.Thread(target=lambda: kill.wait(60) and server.kill())
        killer.start()
        acknowledged = asyncio.run(_push_all(server.url, server.auth, kill))
        killer.join()
        assert server.process is not None
        assert server.process.returncode == -9  # it really was SIGKILLed
    assert acknowledged, "no push was acknowledged before the kill"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with LiveServer(tmp_path / "data", f"sqlite:///{database}") as restarted:
        http = httpx.Client(base_url=restarted.url, headers=restarted.auth, timeout=60)
        for pushed in acknowledged:
            version = http.get(f"/v1/datasets/{pushed['name']}/versions/latest").json()
            assert version["digest"] == pushed["digest"]
            assert version["n_examples"] == 200
        for i in range(PUSHES):  # whatever is visible is whole
            response = http.get(f"/v1/datasets/crash-{i}/versions/latest/examples?limit=1")
            if response.status_code == 200:
                assert response.json()["total"] == 200
        assert restarted.errors_logged() == ""


@pytest.mark.postgres
def test_killed_postgres_connections_answer_503_then_recover(
    tmp_path: Path, postgres_module_url: str
) -> None:
    server = LiveServer(tmp_path / "data", postgres_module_url)
    with server:
        stop = threading.Event()
        name = postgres_module_url.rsplit("/", 1)[-1]
        killed = [0]

        def terminate() -> None:
            admin = create_engine(postgres_module_url.rsplit("/", 1)[0] + "/postgres")
            with admin.connect() as conn:
                while not stop.wait(0.2):
                    killed[0] += conn.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    ).scalar_one()
                    conn.commit()
            admin.dispose()

        terminator = threading.Thread(target=terminate)
        terminator.start()
        try:
            start = time.perf_counter()
            burst = asyncio.run(read_burst(server.url, server.auth, n=150))
        finally:
            stop.set()
            terminator.join()
        print(f"\nterminated {killed[0]} backends; " + burst.summary("reads"))
        assert killed[0] > 0
        assert burst.statuses == {200: 150}, burst.statuses  # 503s were retried, never a 500
        assert time.perf_counter() - start < 120
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert server.errors_logged() == ""
