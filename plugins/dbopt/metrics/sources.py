"""Where rule figures come from: one interface, four backends (Prometheus, Cloud Monitoring, the database, Redis).

``MetricSource.query(metric, scope, window_s)`` returns a ``Series``: time-ordered samples of one figure
for one population ("canary", "baseline", "service" or "database") over the last ``window_s`` seconds,
plus how many requests that population served in the window (the minimum-sample guard). A value may be
NaN (0/0: no requests in a rate window); "no data" is an empty series, never zero.

Every source is described by plain JSON (``to_config`` / ``source_from_config``) so a deferred trigger
can rebuild it in the triggerer process. No Airflow import here.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Template
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from google.auth.exceptions import GoogleAuthError

from dbopt.targets.base import Data, HealthFigures

if TYPE_CHECKING:
    from dbopt.targets.base import Target


class MetricSourceError(Exception):
    """The backend could not answer (down, refused the query, or the query is malformed)."""


@dataclass(frozen=True)
class Sample(Data):
    t: float  # unix seconds
    value: float  # NaN = undefined (0/0), kept so the evaluator can say why it did not judge


@dataclass(frozen=True)
class Series(Data):
    metric: str
    scope: str
    samples: tuple[Sample, ...]
    # Requests the population served in the window; None where the backend has no such notion.
    requests: float | None
    source: str
    query: str = ""


def _brief(err: Exception) -> str:
    """The error's kind and the start of its text (requests repeats the whole URL with its query)."""
    text = str(err)
    return f"{type(err).__name__}: {text[:160]}{'…' if len(text) > 160 else ''}"


def _aligned_end(end: float | None, step_s: float) -> float:
    """Round the end time down to a step multiple so canary and baseline get the same timestamps."""
    now = time.time() if end is None else end
    return math.floor(now / step_s) * step_s


class MetricSource(ABC):
    kind: ClassVar[str]
    metrics: frozenset[str]  # what query() answers; a class default, per instance where configurable

    @abstractmethod
    def query(self, metric: str, scope: str, window_s: float, *, end: float | None = None) -> Series:
        """Samples of ``metric`` for ``scope`` over ``[end - window_s, end]`` (end defaults to now)."""

    @abstractmethod
    def to_config(self) -> dict[str, Any]:
        """Plain JSON that ``source_from_config`` turns back into an equal source."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release connections; the default holds none."""

    def _check_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise MetricSourceError(
                f"metric {metric!r} is not available from the {self.kind} source; available: {sorted(self.metrics)}"
            )


# --- Prometheus --------------------------------------------------------------------------------

# PromQL per metric. $sel is the scope's label selector ({revision="…"}), $sel_5xx the same with
# code_class="5xx", $sel_hit with result="hit", $rate the rate() range. Names match
# include/demo_service/app.py; override per service.
PROMQL: dict[str, str] = {
    "latency_p95_ms": "1000 * histogram_quantile(0.95, "
    "sum by (le) (rate(http_request_duration_seconds_bucket$sel[$rate])))",
    # "or vector(0)": with no 5xx series yet the numerator is empty, and empty/x would read as "no data".
    "error_ratio": "(sum(rate(http_requests_total$sel_5xx[$rate])) or vector(0)) "
    "/ sum(rate(http_requests_total$sel[$rate]))",
    "request_rate": "sum(rate(http_requests_total$sel[$rate]))",
    "pool_usage": "sum(db_pool_checked_out$sel) / sum(db_pool_size$sel)",
    "pool_timeouts": "sum(increase(db_pool_timeouts_total$sel[$rate]))",
    # the application's own cache counter (the demo service's read-through Redis cache)
    "cache_hit_ratio": "sum(rate(cache_lookups_total$sel_hit[$rate])) / sum(rate(cache_lookups_total$sel[$rate]))",
}
PROMQL_REQUESTS = "sum(increase(http_requests_total$sel[$window]))"

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _promql_duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


class PrometheusSource(MetricSource):
    """Prometheus HTTP API (``/api/v1/query_range`` for samples, ``/api/v1/query`` for the request count).

    ``scopes`` maps a scope name to the label matchers selecting it, e.g.
    ``{"canary": {"revision": "svc-00002"}, "baseline": {"revision": "svc-00001"}, "service": {}}``.
    """

    kind = "prometheus"
    metrics = frozenset(PROMQL)

    def __init__(
        self,
        url: str,
        scopes: Mapping[str, Mapping[str, str]],
        *,
        step_s: float = 15.0,
        rate_window_s: float = 60.0,
        queries: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if step_s <= 0 or rate_window_s <= 0:
            raise ValueError("PrometheusSource: step_s and rate_window_s must be > 0")
        for scope, labels in scopes.items():
            bad = [name for name in labels if not _LABEL_NAME.match(name)]
            if bad:
                raise ValueError(f"PrometheusSource scopes[{scope!r}]: invalid label name(s) {bad}")
        self.url = url.rstrip("/")
        self.scopes = {scope: dict(labels) for scope, labels in scopes.items()}
        self.step_s = step_s
        self.rate_window_s = rate_window_s
        self.queries = {**PROMQL, **(queries or {})}
        self.metrics = frozenset(self.queries)
        self.timeout_s = timeout_s
        self._http = requests.Session()

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "scopes": self.scopes,
            "step_s": self.step_s,
            "rate_window_s": self.rate_window_s,
            "queries": {k: v for k, v in self.queries.items() if PROMQL.get(k) != v},
            "timeout_s": self.timeout_s,
        }

    def close(self) -> None:
        self._http.close()

    def _selector(self, scope: str, **extra: str) -> str:
        if scope not in self.scopes:
            raise MetricSourceError(f"scope {scope!r} has no label selector; configured scopes: {sorted(self.scopes)}")
        labels = {**self.scopes[scope], **extra}
        return "{" + ",".join(f"{k}={_promql_string(v)}" for k, v in sorted(labels.items())) + "}"

    def promql(self, metric: str, scope: str, window_s: float) -> tuple[str, str]:
        """The (sample query, request-count query) for a metric and scope."""
        self._check_metric(metric)
        fill = {
            "sel": self._selector(scope),
            "sel_5xx": self._selector(scope, code_class="5xx"),
            "sel_hit": self._selector(scope, result="hit"),
            "rate": _promql_duration(self.rate_window_s),
            "window": _promql_duration(window_s),
        }
        try:
            return Template(self.queries[metric]).substitute(fill), Template(PROMQL_REQUESTS).substitute(fill)
        except (KeyError, ValueError) as err:
            raise MetricSourceError(
                f"PromQL template for {metric!r} uses an unknown placeholder ({err}); "
                "allowed: $sel $sel_5xx $sel_hit $rate $window"
            ) from None

    def query(self, metric: str, scope: str, window_s: float, *, end: float | None = None) -> Series:
        expr, requests_expr = self.promql(metric, scope, window_s)
        stop = _aligned_end(end, self.step_s)
        matrix = self.api("query_range", query=expr, start=stop - window_s, end=stop, step=self.step_s)
        samples = tuple(Sample(float(t), float(v)) for t, v in self._single(matrix, expr, "values"))
        counted = self._single(self.api("query", query=requests_expr, time=stop), requests_expr, "value")
        # No series at all = nothing was ever counted for this selector: zero requests, not unknown.
        total = float(counted[1]) if counted else 0.0
        return Series(metric, scope, samples, total, self.kind, expr)

    def api(self, endpoint: str, **params: Any) -> Any:
        """GET /api/v1/<endpoint>; returns ``data.result`` or raises MetricSourceError."""
        url = f"{self.url}/api/v1/{endpoint}"
        try:
            response = self._http.get(url, params=params, timeout=self.timeout_s)
            body = response.json()
        except (requests.RequestException, ValueError) as err:
            raise MetricSourceError(f"Prometheus {url} did not answer: {_brief(err)}") from err
        if response.status_code != 200 or body.get("status") != "success":
            raise MetricSourceError(
                f"Prometheus {url} refused {params.get('query')!r}: HTTP {response.status_code} "
                f"{body.get('errorType', '')}: {body.get('error', '')}"
            )
        return body["data"]["result"]

    @staticmethod
    def _single(result: list[dict[str, Any]], expr: str, key: str) -> Any:
        if len(result) > 1:
            raise MetricSourceError(
                f"PromQL {expr!r} returned {len(result)} series; a rule needs one: aggregate with sum(...) "
                "or sum by (le) inside histogram_quantile"
            )
        return result[0][key] if result else ([] if key == "values" else None)


# --- Google Cloud Monitoring ---------------------------------------------------------------------

MONITORING_ENDPOINT = "https://monitoring.googleapis.com"
MONITORING_READ_SCOPE = "https://www.googleapis.com/auth/monitoring.read"
_LATENCIES = "run.googleapis.com/request_latencies"
_COUNT = "run.googleapis.com/request_count"
_TRANSIENT = {429, 500, 502, 503, 504}  # RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED …
# Google documents that Cloud Run metrics may take up to ~4 minutes to appear: newer periods are incomplete.
INGESTION_DELAY_S = 240.0


class PartialDataError(MetricSourceError):
    """The backend answered but said its answer may be incomplete (the check is inconclusive, not judged)."""


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _filter_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _point_value(point: dict[str, Any]) -> float:
    value = point["value"]
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "int64Value" in value:
        return float(value["int64Value"])  # int64 travels as a JSON string
    raise MetricSourceError(f"Cloud Monitoring point has no numeric value: {value}")


class CloudMonitoringSource(MetricSource):
    """Cloud Run revision metrics of one service in one region, from Cloud Monitoring's REST
    ``projects.timeSeries.list``.

    REST over ``google.auth`` ``AuthorizedSession`` rather than the ``google-cloud-monitoring`` client:
    that client ships only gRPC transports and is not a project dependency, while google-auth and
    requests already are; the REST endpoint can also be pointed at a local stand-in
    (``dbopt.metrics.monitoring_standin``). ``scopes`` maps a scope to a revision name (None = every
    revision of the service in ``location``). Every filter names the project, the location and the
    service, so another region's requests never count. ``credentials``: "default" (ADC), "anonymous"
    (a stand-in), or a Google connection's extra (``dbopt.cloud.gcp`` fields: key_path, keyfile_dict, …).
    Periods newer than ``ingestion_delay_s`` are not read (still being ingested); transient HTTP errors
    (429/5xx) are retried ``retries`` times with exponential backoff; ``executionErrors`` or ``unreachable``
    in an answer raise :class:`PartialDataError`.
    """

    kind = "cloud_monitoring"
    metrics = frozenset({"latency_p95_ms", "error_ratio", "request_rate"})

    def __init__(
        self,
        project: str,
        service: str,
        location: str,
        scopes: Mapping[str, str | None],
        *,
        endpoint: str = MONITORING_ENDPOINT,
        alignment_s: int = 60,
        credentials: str | Mapping[str, Any] = "default",
        ingestion_delay_s: float = INGESTION_DELAY_S,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        if alignment_s < 60:
            raise ValueError("CloudMonitoringSource alignment_s must be >= 60 (the API's minimum alignment period)")
        if not (isinstance(credentials, Mapping) or credentials in ("default", "anonymous")):
            raise ValueError(
                "CloudMonitoringSource credentials must be 'default' (ADC), 'anonymous' (local stand-in) "
                "or a Google connection's extra (key_path, keyfile_dict, …)"
            )
        if not location:
            raise ValueError("CloudMonitoringSource location must name the service's region, e.g. 'us-central1'")
        self.project = project
        self.service = service
        self.location = location
        self.scopes = dict(scopes)
        self.endpoint = endpoint.rstrip("/")
        self.alignment_s = alignment_s
        self.credentials = credentials
        self.ingestion_delay_s = ingestion_delay_s
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._session: requests.Session | None = None

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "project": self.project,
            "service": self.service,
            "location": self.location,
            "scopes": self.scopes,
            "endpoint": self.endpoint,
            "alignment_s": self.alignment_s,
            "credentials": self.credentials,
            "ingestion_delay_s": self.ingestion_delay_s,
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "backoff_s": self.backoff_s,
        }

    def _http(self) -> requests.Session:
        if self._session is None:
            import google.auth
            from google.auth.credentials import AnonymousCredentials
            from google.auth.transport.requests import AuthorizedSession

            from dbopt.cloud.gcp import ConfigError, GcpSettings

            if isinstance(self.credentials, Mapping):
                try:
                    settings = GcpSettings.from_extra(
                        self.credentials, source="cloud_monitoring credentials", project=self.project
                    )
                except ConfigError as err:
                    raise MetricSourceError(str(err)) from err
                creds = settings.credentials()
            elif self.credentials == "anonymous":
                creds = AnonymousCredentials()
            else:
                creds, _ = google.auth.default(scopes=[MONITORING_READ_SCOPE])
            self._session = AuthorizedSession(creds)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def _filter(self, metric_type: str, scope: str, code_class: str | None = None) -> str:
        if scope not in self.scopes:
            raise MetricSourceError(f"scope {scope!r} has no revision; configured scopes: {sorted(self.scopes)}")
        parts = [
            f"metric.type = {_filter_string(metric_type)}",
            'resource.type = "cloud_run_revision"',
            f"resource.labels.project_id = {_filter_string(self.project)}",
            f"resource.labels.location = {_filter_string(self.location)}",
            f"resource.labels.service_name = {_filter_string(self.service)}",
        ]
        if self.scopes[scope]:
            parts.append(f"resource.labels.revision_name = {_filter_string(self.scopes[scope])}")
        if code_class:
            parts.append(f"metric.labels.response_code_class = {_filter_string(code_class)}")
        return " AND ".join(parts)

    def _get(self, url: str, params: dict[str, Any], filter_: str) -> dict[str, Any]:
        """One page, retried on transient failures; raises MetricSourceError otherwise."""
        for attempt in range(self.retries + 1):
            try:
                response = self._http().get(url, params=params, timeout=self.timeout_s)
                body = response.json()
            except GoogleAuthError as err:  # e.g. a key Google no longer accepts: retrying will not help
                raise MetricSourceError(f"Cloud Monitoring: signing in to Google failed: {_brief(err)}") from err
            except (requests.RequestException, ValueError) as err:
                failure = f"Cloud Monitoring {url} did not answer: {_brief(err)}"
                status = None
            else:
                if response.status_code == 200:
                    return body
                error = body.get("error", {}) if isinstance(body, dict) else {}
                status = response.status_code
                failure = (
                    f"Cloud Monitoring refused {filter_!r}: HTTP {status} "
                    f"{error.get('status', '')}: {error.get('message', body)}"
                )
            if (status is not None and status not in _TRANSIENT) or attempt == self.retries:
                break
            time.sleep(self.backoff_s * 2**attempt)
        raise MetricSourceError(failure + (f" (after {self.retries + 1} attempts)" if status in _TRANSIENT else ""))

    def list_points(
        self, filter_: str, reducer: str, start: float, end: float, group_by: tuple[str, ...] = ()
    ) -> dict[str, dict[float, float]]:
        """Reduced series keyed by their ``group_by`` label values ("" without grouping) as {period end: value}."""
        params: dict[str, Any] = {
            "filter": filter_,
            "interval.startTime": _rfc3339(start),
            "interval.endTime": _rfc3339(end),
            "aggregation.alignmentPeriod": f"{self.alignment_s}s",
            "aggregation.perSeriesAligner": "ALIGN_DELTA",
            "aggregation.crossSeriesReducer": reducer,
            "view": "FULL",
        }
        if group_by:
            params["aggregation.groupByFields"] = list(group_by)
        url = f"{self.endpoint}/v3/projects/{self.project}/timeSeries"
        # A long series may continue on the next page: merge pages by the series' identity.
        series: dict[str, dict[float, float]] = {}
        while True:
            body = self._get(url, params, filter_)
            problems = [f"{e.get('code', '?')}: {e.get('message', '')}" for e in body.get("executionErrors", [])]
            problems += [f"unreachable: {where}" for where in body.get("unreachable", [])]
            if problems:
                raise PartialDataError(f"partial data from Cloud Monitoring for {filter_!r}: {'; '.join(problems)}")
            for ts in body.get("timeSeries", []):
                labels = {**ts.get("resource", {}).get("labels", {}), **ts.get("metric", {}).get("labels", {})}
                key = ",".join(labels.get(field.rsplit(".", 1)[-1], "") for field in group_by)
                points = series.setdefault(key, {})
                for p in ts.get("points", []):
                    points[datetime.fromisoformat(p["interval"]["endTime"]).timestamp()] = _point_value(p)
            if not body.get("nextPageToken"):
                break
            params["pageToken"] = body["nextPageToken"]
        if not group_by and len(series) > 1:
            raise MetricSourceError(f"Cloud Monitoring returned {len(series)} series for {filter_!r}; expected one")
        return series

    def query(self, metric: str, scope: str, window_s: float, *, end: float | None = None) -> Series:
        self._check_metric(metric)
        if window_s < self.alignment_s:
            raise MetricSourceError(f"window {window_s}s is shorter than the alignment period {self.alignment_s}s")
        complete = time.time() - self.ingestion_delay_s
        stop = _aligned_end(complete if end is None else min(end, complete), self.alignment_s)
        start = stop - window_s
        # Requests and errors from one aligned query: request_count summed per response class.
        count_filter = self._filter(_COUNT, scope)
        by_class = self.list_points(count_filter, "REDUCE_SUM", start, stop, ("metric.labels.response_code_class",))
        counts: dict[float, float] = {}
        for points in by_class.values():
            for t, n in points.items():
                counts[t] = counts.get(t, 0.0) + n
        shown = count_filter
        if metric == "latency_p95_ms":
            # p95 of successful requests: fast failures would otherwise pull the percentile down.
            shown = self._filter(_LATENCIES, scope, code_class="2xx")
            values = self.list_points(shown, "REDUCE_PERCENTILE_95", start, stop).get("", {})
        elif metric == "error_ratio":
            errors = by_class.get("5xx", {})
            # A period with requests but no 5xx point had zero errors; 0 requests gives NaN (0/0).
            values = {t: errors.get(t, 0.0) / n if n else math.nan for t, n in counts.items()}
        else:  # request_rate
            values = {t: n / self.alignment_s for t, n in counts.items()}
        samples = tuple(Sample(t, v) for t, v in sorted(values.items()))
        return Series(metric, scope, samples, float(sum(counts.values())), self.kind, shown)


# --- the database itself ---------------------------------------------------------------------------


def _connections_ratio(h: HealthFigures) -> float | None:
    if h.connections_used is None or not h.connections_max:
        return None
    return h.connections_used / h.connections_max


DATABASE_FIGURES: dict[str, Callable[[HealthFigures], float | int | None]] = {
    "cache_hit_ratio": lambda h: h.cache_hit_ratio,
    "connections_used": lambda h: h.connections_used,
    "connections_ratio": _connections_ratio,
    "replication_lag_s": lambda h: h.replication_lag_s,
    "long_transactions": lambda h: h.long_transactions,
    "longest_transaction_s": lambda h: h.longest_transaction_s,
}


# An end time this close to now still means "now": one check's rules share an end time taken before
# the first of them runs, and opening a connection can take a moment.
PRESENT_S = 5.0


class DatabaseSource(MetricSource):
    """Health figures a ``dbopt.targets`` Target reports (``target.health()``), scope "database" only.

    The engine only knows the present, so each reading (at most one per ``min_reading_interval_s``) is
    kept and a query returns the readings inside the window: ``sustained_for`` then spans successive
    polls of one process. A figure the engine cannot tell (None) gives no sample, i.e. "no data".
    """

    kind = "database"
    metrics = frozenset(DATABASE_FIGURES)

    def __init__(
        self,
        url: str | None = None,
        *,
        target: Target | None = None,
        long_transaction_s: float = 60.0,
        min_reading_interval_s: float = 1.0,
        history_s: float = 3600.0,
    ) -> None:
        if (url is None) == (target is None):
            raise ValueError("DatabaseSource needs exactly one of url= (SQLAlchemy URL) or target=")
        self.url = url
        self._target = target
        self.long_transaction_s = long_transaction_s
        self.min_reading_interval_s = min_reading_interval_s
        self.history_s = history_s
        self._readings: list[tuple[float, HealthFigures]] = []

    def to_config(self) -> dict[str, Any]:
        if self.url is None:
            raise ValueError("a DatabaseSource built from a Target object cannot be serialized; build it with url=")
        return {
            "kind": self.kind,
            "url": self.url,
            "long_transaction_s": self.long_transaction_s,
            "min_reading_interval_s": self.min_reading_interval_s,
            "history_s": self.history_s,
        }

    def _target_(self) -> Target:
        if self._target is None:
            from dbopt.targets import open_target

            self._target = open_target(self.url)  # type: ignore[arg-type]
        return self._target

    def close(self) -> None:
        if self._target is not None and self.url is not None:
            self._target.close()  # only what we opened ourselves
            self._target = None

    def read(self, now: float | None = None) -> HealthFigures:
        """A fresh reading unless the last one is younger than ``min_reading_interval_s``."""
        now = time.time() if now is None else now
        if not self._readings or now - self._readings[-1][0] >= self.min_reading_interval_s:
            self._readings.append((now, self._target_().health(self.long_transaction_s)))
            self._readings = [(t, h) for t, h in self._readings if t >= now - self.history_s]
        return self._readings[-1][1]

    def query(self, metric: str, scope: str, window_s: float, *, end: float | None = None) -> Series:
        self._check_metric(metric)
        if scope != "database":
            raise MetricSourceError(f"the database source only answers scope 'database', not {scope!r}")
        now = time.time()
        if end is not None and end < now - PRESENT_S:
            raise MetricSourceError("database health figures are instantaneous: the past cannot be queried")
        self.read(now)
        figure = DATABASE_FIGURES[metric]
        samples = tuple(
            Sample(t, float(v)) for t, h in self._readings if t >= now - window_s and (v := figure(h)) is not None
        )
        return Series(metric, scope, samples, None, self.kind, f"target.health().{metric}")


# --- Redis (the cache in front of the database) -------------------------------------------------------


class RedisSource(MetricSource):
    """``cache_hit_ratio`` of a Redis server from ``INFO stats`` (``dbopt.cache.stats``), scope "service".

    Redis keeps counters, not history: each query takes a reading and the samples are the hit ratios
    between successive readings inside the window; the request count is the lookups over the window. A
    first query waits ``probe_s`` for a second reading, so a one-off check (the health gate) still gets
    a delta. NaN = no lookups between two readings.
    """

    kind = "redis"
    metrics = frozenset({"cache_hit_ratio"})

    def __init__(self, url: str, *, probe_s: float = 5.0, history_s: float = 3600.0, timeout_s: float = 5.0) -> None:
        if probe_s <= 0:
            raise ValueError("RedisSource: probe_s must be > 0")
        self.url = url
        self.probe_s = probe_s
        self.history_s = history_s
        self.timeout_s = timeout_s
        self._client: Any = None
        self._readings: list[Any] = []

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "probe_s": self.probe_s, "history_s": self.history_s,
                "timeout_s": self.timeout_s}  # fmt: skip

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _read(self) -> Any:
        import redis

        from dbopt.cache.stats import read_stats

        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout_s)
        try:
            reading = read_stats(self._client)
        except redis.RedisError as err:
            where = self._client.connection_pool.connection_kwargs  # host/port/db; never the password
            raise MetricSourceError(
                f"Redis {where.get('host')}:{where.get('port')} did not answer INFO stats: {_brief(err)}"
            ) from err
        self._readings = [r for r in self._readings if r.t >= reading.t - self.history_s] + [reading]
        return reading

    def query(self, metric: str, scope: str, window_s: float, *, end: float | None = None) -> Series:
        from dbopt.cache.stats import deltas

        self._check_metric(metric)
        if scope != "service":
            raise MetricSourceError(f"the redis source answers scope 'service' (the whole server), not {scope!r}")
        if end is not None and end < time.time() - PRESENT_S:
            raise MetricSourceError("Redis counters are instantaneous: the past cannot be queried")
        if not self._readings:
            self._read()
            time.sleep(self.probe_s)
        now = self._read().t
        inside = [r for r in self._readings if r.t >= now - max(window_s, self.probe_s)]
        pairs = [(after.t, *deltas(before, after)) for before, after in itertools.pairwise(inside)]
        samples = tuple(Sample(t, h / (h + m) if h + m else math.nan) for t, h, m in pairs)
        lookups = float(sum(h + m for _, h, m in pairs))
        return Series(metric, scope, samples, lookups, self.kind, "INFO stats keyspace_hits/keyspace_misses")


# --- plain-JSON descriptions -------------------------------------------------------------------------

_KINDS: dict[str, type[MetricSource]] = {
    PrometheusSource.kind: PrometheusSource,
    CloudMonitoringSource.kind: CloudMonitoringSource,
    DatabaseSource.kind: DatabaseSource,
    RedisSource.kind: RedisSource,
}


def source_from_config(config: Mapping[str, Any]) -> MetricSource:
    """Build a source from ``to_config()`` output, e.g. ``{"kind": "prometheus", "url": …, "scopes": …}``."""
    options = dict(config)
    kind = options.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"metric source 'kind' must be one of {sorted(_KINDS)}, got {kind!r}")
    try:
        return _KINDS[kind](**options)
    except TypeError as err:
        raise ValueError(f"metric source of kind {kind!r}: {err}") from None


def sources_from_config(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, MetricSource]:
    """{name: config} → {name: source}; the error names the entry that is wrong."""
    built: dict[str, MetricSource] = {}
    try:
        for name, config in configs.items():
            try:
                built[name] = source_from_config(config)
            except ValueError as err:
                raise ValueError(f"sources[{name!r}]: {err}") from None
    except ValueError:
        close_all(built)
        raise
    return built


def close_all(sources: Mapping[str, MetricSource]) -> None:
    for source in sources.values():
        source.close()
