"""A real scale-out stack for tests: the API and Celery workers as subprocesses.

The API (``tunegate serve``) and each worker (``tunegate worker``) run through the
real console script, on a fresh PostgreSQL database and this machine's Redis, with
a queue name of their own so parallel runs never share messages. Every process is
started in its own session and killed (its whole process group) at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from service.db.models import LeaseEvent
from tests.models import cache_root, tiny_llama_dir
from tests.services import POSTGRES_ADMIN_URL, REDIS_URL

TUNEGATE = Path(sys.executable).with_name("tunegate")
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """An empty PostgreSQL database (the API migrates it), dropped afterwards."""
    name = f"tunegate_scaleout_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def purge_queue(queue: str) -> None:
    """Remove this run's queue and its unacknowledged messages from Redis (kombu's keys)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    for tag, raw in client.hscan_iter("unacked"):
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError):
            continue
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A subprocess in its own process group, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process group at once (what a crashed machine looks like)."""
        if self.alive:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.name} (rc={self.popen.poll()}) ---\n" + "\n".join(lines[-n:])


@dataclass
class Stack:
    """The API on a port plus any number of workers, sharing one database and queue."""

    root: Path
    database_url: str
    queue: str
    extra_env: Mapping[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEGATE_")}
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            TUNEGATE_TEST_CACHE=str(cache_root()),
            TUNEGATE_DATA_DIR=str(self.root / "data"),
            TUNEGATE_DATABASE_URL=self.database_url,
            TUNEGATE_QUEUE="celery",
            TUNEGATE_BROKER_URL=REDIS_URL,
            TUNEGATE_CELERY_QUEUE=self.queue,
            TUNEGATE_MODEL_ROOTS=str(tiny_llama_dir().parent),
            TUNEGATE_CHECKPOINT_ROOTS=str(cache_root() / "adapters"),
            TUNEGATE_DEVICE="cpu",
        )
        env.update(self.extra_env)
        env.update(more)
        return env

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str], command: list[str] | None = None
    ) -> Proc:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [*(command or [str(TUNEGATE)]), *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.root,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_api(self, timeout: float = 60) -> Proc:
        proc = self._spawn(
            "api",
            ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            self.env(),
        )
        self.wait_for(lambda: self._ready(), timeout, "the API's /readyz", proc)
        return proc

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(
        self, worker_id: str, timeout: float = 90, count_into: Path | None = None
    ) -> Proc:
        """Start ``tunegate worker`` and wait until Celery says it is ready. With
        ``count_into``, the worker counts the examples its model generates into that file
        (a forward hook: :mod:`tests.scaleout.counting_worker`)."""
        env = self.env(TUNEGATE_WORKER_ID=worker_id)
        command = None
        if count_into is not None:
            env |= {"TEST_FORWARD_COUNT_FILE": str(count_into), "PYTHONPATH": str(REPO)}
            command = [sys.executable, "-m", "tests.scaleout.counting_worker"]
        proc = self._spawn(worker_id, ["worker", "--loglevel", "info"], env, command)
        self.wait_for(
            lambda: "ready." in proc.log.read_text(errors="replace"),
            timeout,
            f"worker {worker_id} to be ready",
            proc,
        )
        return proc

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.name != "api" and p.alive]

    def token(self) -> str:
        return (self.root / "data" / "admin.token").read_text().strip()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=30,
        )

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def wait_for(
        self, check: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if proc is not None and not proc.alive:
                raise AssertionError(f"{proc.name} exited while waiting for {what}\n{self.logs()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")

    def close(self, grace: float = 3.0) -> None:
        """SIGTERM every process, give them ``grace`` seconds together, SIGKILL the rest."""
        for proc in self.procs:
            if proc.alive:
                os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(p.alive for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for proc in self.procs:
            proc.kill()


def wait_finished(
    stack: Stack, client: httpx.Client, evaluation_id: int, timeout: float
) -> dict[str, Any]:
    """Poll ``GET /v1/evaluations/{id}`` until it is terminal; return its body."""
    body: dict[str, Any] = {}

    def done() -> bool:
        nonlocal body
        body = client.get(f"/v1/evaluations/{evaluation_id}").json()
        return body.get("status") in ("succeeded", "failed", "cancelled")

    stack.wait_for(done, timeout, f"evaluation {evaluation_id} to finish")
    return body


def results_by_key(client: httpx.Client, evaluation_id: int) -> dict[str, dict[str, Any]]:
    """Every per-example row of an evaluation over REST, by example key."""
    page = client.get(f"/v1/evaluations/{evaluation_id}/results", params={"limit": 100}).json()
    assert page["total"] <= 100, "the test datasets fit in one page"
    return {row["example_key"]: row for row in page["items"]}


def lease_events(database_url: str, evaluation_ids: list[int]) -> list[LeaseEvent]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    LeaseEvent.evaluation_id,
                    LeaseEvent.worker_id,
                    LeaseEvent.event,
                    LeaseEvent.at,
                    LeaseEvent.id,
                )
                .where(LeaseEvent.evaluation_id.in_(evaluation_ids))
                .order_by(LeaseEvent.at, LeaseEvent.id)
            ).all()
    finally:
        engine.dispose()
    return [
        LeaseEvent(evaluation_id=r[0], worker_id=r[1], event=r[2], at=r[3], id=r[4]) for r in rows
    ]
