"""Running the app on uvicorn: in the foreground (``run_server``) or in a background thread.

The listening socket is bound here first, so that a busy port is one clear ``ServeError``.
Shutdown is uvicorn's graceful one: on SIGINT/SIGTERM (or ``BackgroundServer.stop``) it stops
accepting connections, lets requests in flight finish (up to ``GRACEFUL_TIMEOUT_S``), then the
app stops its batcher and workers.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..errors import DependencyError, ServeError

GRACEFUL_TIMEOUT_S = 30


def _uvicorn():
    try:
        import uvicorn
    except ImportError as err:
        raise DependencyError("scconv-serve needs uvicorn: pip install 'scconv-deploy[serve]'") from err
    return uvicorn


def _listen(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only for proto == TCP,
    # and without it Nagle's algorithm adds ~40 ms to every response.
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    return sock


def _server(app: Any, host: str, port: int, on_ready: Callable[[str], None] | None, **options: Any):
    """(uvicorn server, its bound socket); ``on_ready(url)`` is called once it accepts connections."""
    uvicorn = _uvicorn()
    sock = _listen(host, port)
    url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and not self.should_exit and on_ready is not None:
                on_ready(url)

    config = uvicorn.Config(
        app,
        host,
        sock.getsockname()[1],
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        log_config=None,
        **options,
    )
    return Server(config), sock


def run_server(
    app: Any, host: str = "127.0.0.1", port: int = 8000, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; ``on_ready(url)`` once it listens (port 0: a free port)."""
    server, sock = _server(app, host, port, on_ready)
    server.run(sockets=[sock])


class BackgroundServer:
    """``app`` on uvicorn in a daemon thread (tests, embedding): ``with BackgroundServer(app) as s: ...``."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 30) -> None:
        self.url: str | None = None
        self._ready = threading.Event()
        self._server, self._sock = _server(app, host, port, self._on_ready, access_log=False)
        self._thread = threading.Thread(target=self._run, name="scconv-serve", daemon=True)
        self._timeout = start_timeout_s

    def _on_ready(self, url: str) -> None:
        self.url = url
        self._ready.set()

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._ready.set()  # wakes __enter__ when the server could not start

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(self._timeout) or self.url is None:
            self.stop()
            raise ServeError("the server did not start (see the log)")
        return self

    def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM; returns when the server has finished."""
        self._server.should_exit = True
        self._thread.join(GRACEFUL_TIMEOUT_S + 5)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
