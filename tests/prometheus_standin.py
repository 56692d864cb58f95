"""A Prometheus HTTP API stand-in for DAG and operator tests: answers per ``revision`` label.

``/api/v1/query_range`` gives four samples of ``value(revision)``, ``/api/v1/query`` the same value, and
any ``increase(`` query (the request count) 1000. With ``traffic``, a ``query_range`` of the scaling
forecast's peak concurrency (``http_request_duration_seconds_sum``) gets one sample per step from start to
end, ``traffic(t)`` each, as Prometheus answers over stored history. Loopback, free port. For PromQL itself
the real Prometheus runs in test_metrics_prometheus.py.
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
    def __init__(self, value: Callable[[str], float], traffic: Callable[[float], float] | None = None) -> None:
        self.value = value  # revision label value -> the figure every query about it returns
        self.traffic = traffic  # unix seconds -> the peak concurrency of the hour ending then
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
                history = prometheus.traffic and "http_request_duration_seconds_sum" in params["query"]
                if url.path.endswith("query_range") and history:
                    start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
                    times = [start + k * step for k in range(int((end - start) // step) + 1)]
                    result = [{"metric": {}, "values": [[t, str(prometheus.traffic(t))] for t in times]}]
                elif url.path.endswith("query_range"):
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
