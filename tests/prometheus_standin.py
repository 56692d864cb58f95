"""A Prometheus HTTP API stand-in for DAG and operator tests: answers per ``revision`` label.

``/api/v1/query_range`` gives four samples of ``value(revision)``, ``/api/v1/query`` the same value, and
any ``increase(`` query (the request count) 1000. Loopback, free port. For PromQL itself the real
Prometheus runs in test_metrics_prometheus.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from dbopt.standin_server import BackgroundServer


class RevisionPrometheus(BackgroundServer):
    def __init__(self, value: Callable[[str], float]) -> None:
        self.value = value  # revision label value -> the figure every query about it returns
        self.queries: list[str] = []

    @property
    def port(self) -> int:  # type: ignore[override]
        return int(self.url.rsplit(":", 1)[1]) if self._server else 0

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        prometheus = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                prometheus.queries.append(params["query"])
                revision = re.search(r'revision="([^"]+)"', params["query"])
                value = 1000.0 if "increase(" in params["query"] else prometheus.value(revision[1] if revision else "")
                if url.path.endswith("query_range"):
                    end, step = float(params["end"]), float(params["step"])
                    result = [{"metric": {}, "values": [[end - k * step, str(value)] for k in range(3, -1, -1)]}]
                else:
                    result = [{"metric": {}, "value": [time.time(), str(value)]}]
                data = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
