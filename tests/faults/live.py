"""A real tunegate server in a subprocess (uvicorn), for the fault suite and its benchmarks.

A subprocess, not a thread: it can be SIGKILLed, its RSS measured, and its event
loop and threadpool are its own, as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

from service.cli.embedded import free_port


class LiveServer:
    """``with LiveServer(data_dir, database_url) as server: server.url, server.token``."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "TUNEGATE_DATA_DIR": str(data_dir),
            "TUNEGATE_DATABASE_URL": database_url,
            "TUNEGATE_QUEUE": "none",
            "TUNEGATE_CHECKPOINT_ROOTS": str(data_dir / "checkpoints"),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, timeout: float = 90.0) -> LiveServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "service.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--backlog",
            "4096",
            "--timeout-keep-alive",
            "300",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited on start:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start within {timeout:g}s")

    def kill(self) -> None:
        """SIGKILL: no lifespan, no flush — a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def errors_logged(self) -> str:
        """The server's log when it holds an unhandled request error (a 500), else ``""``.

        Background threads that log and retry (the webhook sender starved of a
        connection by a squeezed pool) are not request errors.
        """
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        markers = ("unhandled error", "Exception in ASGI application")
        return text if any(marker in text for marker in markers) else ""

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
