"""A small local stand-in for Cloud Monitoring's REST ``GET /v3/projects/{p}/timeSeries`` (tests, demos).

It holds raw Cloud Run requests (time, revision, latency, response code class) and answers
``projects.timeSeries.list`` for ``run.googleapis.com/request_count`` and ``request_latencies`` the
way the API documents it: filter clauses joined by AND; ``ALIGN_DELTA`` / ``ALIGN_RATE`` over
``alignmentPeriod`` (>= 60s) periods ending at ``interval.endTime``; ``REDUCE_SUM`` /
``REDUCE_PERCENTILE_95`` across series (optionally ``groupByFields``); points newest first; int64
values as JSON strings; periods without data have no point; long answers are paged with
``nextPageToken`` (a series' points may continue on the next page); errors as
``{"error": {"code", "message", "status"}}``. Percentiles are exact nearest-rank over the raw
latencies, not the bucket interpolation the real service does. Like the real service it can lag
(``ingestion_delay_s``: newer requests are not visible yet), answer with ``executionErrors`` (partial data),
fail transiently (``fail_next``) and, given a ``TokenAuthority``, refuse calls without its tokens
(401 UNAUTHENTICATED) and record who called. Filters take ``resource.labels.x`` and ``resource.label.x``
alike (both spellings are valid in the Monitoring filter language). Loopback only.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from dbopt.standin_server import BackgroundServer

if TYPE_CHECKING:
    from dbopt.cloud.standin_auth import TokenAuthority

COUNT = "run.googleapis.com/request_count"
LATENCIES = "run.googleapis.com/request_latencies"
_PATH = re.compile(r"^/v3/projects/([^/]+)/timeSeries$")
_CLAUSE = re.compile(r'^\s*([a-z_.]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$')
_GROUPABLE = {"resource.label.revision_name", "resource.label.service_name", "metric.label.response_code_class"}
_FILTERABLE = {"resource.type", "resource.label.location", "resource.label.project_id", *_GROUPABLE}
_STATUS = {401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class Request:
    """One request a Cloud Run revision served."""

    t: float
    revision: str
    latency_ms: float
    code_class: str = "2xx"
    service: str = "svc"
    location: str = "europe-west1"
    project: str = "demo-project"


def _parse_time(text: str, name: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise BadRequest(f"{name}: {text!r} is not an RFC 3339 timestamp") from None


def _format_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_filter(text: str) -> dict[str, str]:
    clauses = {}
    for clause in text.split(" AND "):
        m = _CLAUSE.match(clause)
        if not m:
            raise BadRequest(f'unsupported filter clause {clause.strip()!r} (stand-in supports key = "value" AND …)')
        clauses[_singular(m.group(1))] = re.sub(r"\\(.)", r"\1", m.group(2))
    if "metric.type" not in clauses:
        raise BadRequest("filter must name metric.type")
    return clauses


def _singular(name: str) -> str:
    """``resource.labels.x`` → ``resource.label.x`` (the filter language accepts both)."""
    return re.sub(r"^(resource|metric)\.labels\.", r"\1.label.", name)


def _labels(r: Request) -> dict[str, str]:
    return {
        "resource.type": "cloud_run_revision",
        "resource.label.service_name": r.service,
        "resource.label.revision_name": r.revision,
        "resource.label.location": r.location,
        "resource.label.project_id": r.project,
        "metric.label.response_code_class": r.code_class,
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class MonitoringStandIn(BackgroundServer):
    """Use: ``with MonitoringStandIn() as s: s.record([...])``, then point a source at it with
    ``CloudMonitoringSource(..., endpoint=s.url, credentials="anonymous")``."""

    def __init__(
        self, page_size: int = 1000, *, ingestion_delay_s: float = 0.0, authority: TokenAuthority | None = None
    ) -> None:
        self.page_size = page_size  # points per page, to exercise paging
        self.ingestion_delay_s = ingestion_delay_s  # requests newer than this (wall clock) are not visible yet
        self.authority = authority
        self.execution_errors: list[dict[str, Any]] = []  # sent with every answer while set (partial data)
        self.failures: list[int] = []  # HTTP statuses to answer the next calls with, one per call
        self.requests: list[Request] = []
        self.seen: list[dict[str, Any]] = []  # what clients sent: path, params, headers
        self.principals: list[str | None] = []  # who called (with an authority)
        self._lock = threading.Lock()

    # --- data -------------------------------------------------------------------------------------
    def record(self, requests: Iterable[Request]) -> None:
        with self._lock:
            self.requests.extend(requests)

    def fail_next(self, *statuses: int) -> None:
        """Answer the next calls with these HTTP statuses (e.g. 503, 429), then normally again."""
        self.failures.extend(statuses)

    # --- server -----------------------------------------------------------------------------------
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = standin.handle(self.path, dict(self.headers))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        return Handler

    # --- the API ----------------------------------------------------------------------------------
    def handle(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        params = {k: v if k.endswith("groupByFields") else v[-1] for k, v in parse_qs(parts.query).items()}
        self.seen.append({"path": parts.path, "params": params, "headers": headers})
        if self.authority is not None:
            from dbopt.cloud.standin_auth import authorization

            self.principals.append(self.authority.principal(authorization(headers)))
            if self.principals[-1] is None:
                return _error(401, "Request had invalid authentication credentials.")
        if self.failures:
            return _error(self.failures.pop(0), "The service is currently unavailable.")
        m = _PATH.match(parts.path)
        if not m:
            return 404, {"error": {"code": 404, "message": f"no such method {parts.path}", "status": "NOT_FOUND"}}
        try:
            body = self.list_time_series(params)
        except BadRequest as err:
            return 400, {"error": {"code": 400, "message": str(err), "status": "INVALID_ARGUMENT"}}
        if self.execution_errors:
            body["executionErrors"] = list(self.execution_errors)
        return 200, body

    def list_time_series(self, params: dict[str, Any]) -> dict[str, Any]:
        for required in ("filter", "interval.endTime", "view"):
            if required not in params:
                raise BadRequest(f"{required} is required")
        if params["view"] not in ("FULL", "HEADERS"):
            raise BadRequest(f"view must be FULL or HEADERS, got {params['view']!r}")
        clauses = _parse_filter(params["filter"])
        metric_type = clauses["metric.type"]
        if metric_type not in (COUNT, LATENCIES):
            raise BadRequest(f"the stand-in knows {COUNT} and {LATENCIES}, not {metric_type!r}")
        end = _parse_time(params["interval.endTime"], "interval.endTime")
        start = _parse_time(params.get("interval.startTime", params["interval.endTime"]), "interval.startTime")
        if start > end:
            raise BadRequest("interval.startTime must not be after interval.endTime")
        aligner = params.get("aggregation.perSeriesAligner", "ALIGN_NONE")
        reducer = params.get("aggregation.crossSeriesReducer", "REDUCE_NONE")
        if aligner not in ("ALIGN_DELTA", "ALIGN_RATE"):
            raise BadRequest(f"the stand-in supports perSeriesAligner ALIGN_DELTA and ALIGN_RATE, not {aligner!r}")
        period_text = params.get("aggregation.alignmentPeriod", "")
        if not re.fullmatch(r"\d+s", period_text) or int(period_text[:-1]) < 60:
            raise BadRequest(f"aggregation.alignmentPeriod must be at least 60s, got {period_text!r}")
        period = int(period_text[:-1])
        if reducer not in ("REDUCE_NONE", "REDUCE_SUM", "REDUCE_PERCENTILE_95"):
            raise BadRequest(f"the stand-in supports REDUCE_SUM and REDUCE_PERCENTILE_95, not {reducer!r}")
        if (reducer == "REDUCE_PERCENTILE_95") != (metric_type == LATENCIES):
            raise BadRequest(f"{reducer} does not apply to {metric_type} in this stand-in")
        group_by = [_singular(f) for f in params.get("aggregation.groupByFields", [])]
        if set(group_by) - _GROUPABLE:
            raise BadRequest(f"groupByFields {sorted(set(group_by) - _GROUPABLE)} not supported")
        label_filters = {k: v for k, v in clauses.items() if k != "metric.type"}
        unknown = set(label_filters) - _FILTERABLE
        if unknown:
            raise BadRequest(f"filter on {sorted(unknown)} not supported by the stand-in")

        # Series identity: the fields kept after reduction (all labels when not reducing).
        keep = group_by if reducer != "REDUCE_NONE" else sorted(_FILTERABLE - {"resource.type"})
        if metric_type == LATENCIES and reducer == "REDUCE_NONE":
            keep = [k for k in keep if k != "metric.label.response_code_class"]
        buckets: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        ingested = time.time() - self.ingestion_delay_s
        with self._lock:
            selected = [
                r
                for r in self.requests
                if r.t <= ingested and all(_labels(r)[k] == v for k, v in label_filters.items())
            ]
        for r in selected:
            if not start < r.t <= end:
                continue
            k = max(0, math.ceil((end - r.t) / period) - 1)  # period k covers (end-(k+1)P, end-kP]
            buckets[tuple((f, _labels(r)[f]) for f in keep)][k].append(r.latency_ms)

        series = []
        for key, periods in sorted(buckets.items()):
            points = []
            for k in sorted(periods):  # k = 0 is the newest period: newest first, as the API does
                values = periods[k]
                points.append(
                    {
                        "interval": {
                            "startTime": _format_time(end - (k + 1) * period),
                            "endTime": _format_time(end - k * period),
                        },
                        "value": self._value(metric_type, aligner, reducer, values, period),
                    }
                )
            series.append(self._series(metric_type, dict(key), points, aligner, reducer))
        if params["view"] == "HEADERS":
            return {"timeSeries": [{**s, "points": []} for s in series]}
        return self._page(series, int(params.get("pageToken") or 0))

    @staticmethod
    def _value(metric_type: str, aligner: str, reducer: str, values: list[float], period: int) -> dict[str, Any]:
        if metric_type == LATENCIES:
            if reducer == "REDUCE_PERCENTILE_95":
                return {"doubleValue": _p95(values)}
            return {"distributionValue": {"count": str(len(values)), "mean": sum(values) / len(values)}}
        if aligner == "ALIGN_RATE":
            return {"doubleValue": len(values) / period}
        return {"int64Value": str(len(values))}

    @staticmethod
    def _series(metric_type: str, kept: dict[str, str], points: list, aligner: str, reducer: str) -> dict[str, Any]:
        metric_labels = {k.split(".")[-1]: v for k, v in kept.items() if k.startswith("metric.label.")}
        resource_labels = {k.split(".")[-1]: v for k, v in kept.items() if k.startswith("resource.label.")}
        if metric_type == LATENCIES:
            value_type = "DOUBLE" if reducer == "REDUCE_PERCENTILE_95" else "DISTRIBUTION"
        else:
            value_type = "DOUBLE" if aligner == "ALIGN_RATE" else "INT64"
        return {
            "metric": {"type": metric_type, "labels": metric_labels},
            "resource": {"type": "cloud_run_revision", "labels": resource_labels},
            "metricKind": "GAUGE" if aligner == "ALIGN_RATE" else "DELTA",
            "valueType": value_type,
            "points": points,
        }

    def _page(self, series: list[dict[str, Any]], offset: int) -> dict[str, Any]:
        """Points offset..offset+page_size across the series in order; a series may span pages."""
        flat = [(i, p) for i, s in enumerate(series) for p in s["points"]]
        chunk = flat[offset : offset + self.page_size]
        out: list[dict[str, Any]] = []
        for i, point in chunk:
            if not out or out[-1]["_i"] != i:
                out.append({**series[i], "points": [], "_i": i})
            out[-1]["points"].append(point)
        body: dict[str, Any] = {"timeSeries": [{k: v for k, v in s.items() if k != "_i"} for s in out]}
        if offset + self.page_size < len(flat):
            body["nextPageToken"] = str(offset + self.page_size)
        return body


def _error(code: int, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"error": {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}}
