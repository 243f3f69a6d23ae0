"""An embedded tunegate server in a background thread (the demo and the CLI tests use it).

It is the real thing — uvicorn serving :func:`service.api.app.create_app` on a local port,
with the in-process worker — so clients reach it over HTTP exactly as they would reach a
remote server.
"""

from __future__ import annotations

import socket
import threading
import time
from types import FrameType, TracebackType
from typing import Any

from service.errors import TunegateError
from service.settings import Settings


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerDidNotStart(TunegateError):
    status_code = 500


def uvicorn_server(app: Any, **config: Any) -> Any:
    """A ``uvicorn.Server`` for ``app`` whose exit (a signal) also sets ``app.state.stopping``,
    so waiting long-polls answer at once instead of holding the shutdown."""
    import uvicorn

    stopping: threading.Event = app.state.stopping

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stopping.set()
            super().handle_exit(sig, frame)

    return _Server(uvicorn.Config(app, **config))


class EmbeddedServer:
    """``with EmbeddedServer(settings) as server: ... server.url ...``"""

    def __init__(
        self, settings: Settings, *, port: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port or free_port(host)
        self._server: Any = None
        self._app: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_token(self) -> str:
        """The local admin token the server wrote on start."""
        return self.settings.admin_token_file.read_text(encoding="utf-8").strip()

    def start(self, timeout: float = 120.0) -> EmbeddedServer:
        """Start serving; returns once the app's lifespan (migrations, worker) has run."""
        from service.api.app import create_app

        self._app = create_app(self.settings)
        server = uvicorn_server(
            self._app, host=self.host, port=self.port, log_level="warning", lifespan="on"
        )
        self._server = server
        self._thread = threading.Thread(target=server.run, name="tunegate-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                raise ServerDidNotStart(f"the embedded server on port {self.port} exited on start")
            if time.monotonic() > deadline:
                raise ServerDidNotStart(f"the embedded server did not start within {timeout:g}s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Ask uvicorn to exit (the lifespan stops the worker) and wait for the thread."""
        if self._server is not None:
            self._app.state.stopping.set()  # waiting long-polls answer now
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
