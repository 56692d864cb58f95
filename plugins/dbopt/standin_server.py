"""The plumbing both local API stand-ins share: an HTTP server on a daemon thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class BackgroundServer:
    """Serves ``handler_class()`` on ``host:port`` (port 0: a free one) until ``stop()``."""

    host: str = "127.0.0.1"
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started; call start() or use it as a context manager")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._server = ThreadingHTTPServer((self.host, self.port), self.handler_class())
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
