"""CloudMonitoringSource (REST timeSeries.list via google-auth) against the local stand-in."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest

from dbopt.metrics.analysis import AnalysisPlan, advance, start
from dbopt.metrics.monitoring_standin import MonitoringStandIn, Request
from dbopt.metrics.rules import check, check_sources, parse_rules
from dbopt.metrics.sources import CloudMonitoringSource, MetricSourceError, PartialDataError, source_from_config

END = 1_789_999_980.0  # in the past, a multiple of 60: the alignment periods end here, END-60, END-120, …


def traffic() -> list[Request]:
    """10 minutes: baseline 20 req/min at 100 ms, canary 10 req/min at 300 ms with 2 of 10 failing.

    In the newest minute the canary has no requests at all (its point must be missing, not zero).
    """
    out = []
    for minute in range(10):
        t0 = END - 600 + minute * 60
        out += [Request(t0 + 1 + i, "svc-001", 100.0 + i) for i in range(20)]
        if minute < 9:
            out += [Request(t0 + 2 + i, "svc-002", 300.0 + i, "5xx" if i < 2 else "2xx") for i in range(10)]
    out.append(Request(END - 30, "other-svc-rev", 9999.0, service="other"))  # another service: filtered out
    return out


@pytest.fixture
def standin() -> Iterator[MonitoringStandIn]:
    with MonitoringStandIn() as s:
        s.record(traffic())
        yield s


def source(standin: MonitoringStandIn) -> CloudMonitoringSource:
    return CloudMonitoringSource(
        "demo-project",
        "svc",
        "europe-west1",
        {"canary": "svc-002", "baseline": "svc-001", "service": None},
        endpoint=standin.url,
        credentials="anonymous",
        backoff_s=0.01,
    )


def test_request_latencies_p95_per_revision(standin: MonitoringStandIn):
    s = source(standin)
    canary = s.query("latency_p95_ms", "canary", 600, end=END + 5)  # end is aligned down to END
    assert [x.t for x in canary.samples] == [END - 600 + 60 * k for k in range(1, 10)]  # oldest first
    assert {x.value for x in canary.samples} == {309.0}  # nearest-rank p95 of 300..309
    assert canary.requests == 90
    baseline = s.query("latency_p95_ms", "baseline", 600, end=END)
    assert len(baseline.samples) == 10 and {x.value for x in baseline.samples} == {118.0}
    sent = standin.seen[-1]["params"]
    assert sent["aggregation.crossSeriesReducer"] == "REDUCE_PERCENTILE_95"
    assert sent["aggregation.alignmentPeriod"] == "60s" and sent["aggregation.perSeriesAligner"] == "ALIGN_DELTA"
    assert sent["filter"] == (
        'metric.type = "run.googleapis.com/request_latencies" AND resource.type = "cloud_run_revision" '
        'AND resource.labels.project_id = "demo-project" AND resource.labels.location = "europe-west1" '
        'AND resource.labels.service_name = "svc" AND resource.labels.revision_name = "svc-001" '
        'AND metric.labels.response_code_class = "2xx"'
    )
    assert "Authorization" not in standin.seen[-1]["headers"]  # anonymous credentials for the stand-in


def test_error_ratio_and_rate_by_response_code_class(standin: MonitoringStandIn):
    s = source(standin)
    errors = s.query("error_ratio", "canary", 600, end=END)
    assert [x.value for x in errors.samples] == [0.2] * 9
    assert [x.value for x in s.query("error_ratio", "baseline", 600, end=END).samples] == [0.0] * 10
    # requests and errors come from one aligned query, grouped by response class
    assert all(
        seen["params"]["aggregation.groupByFields"] == ["metric.labels.response_code_class"] for seen in standin.seen
    )
    rate = s.query("request_rate", "service", 600, end=END)
    assert rate.samples[0].value == pytest.approx(30 / 60) and rate.samples[-1].value == pytest.approx(20 / 60)
    assert rate.requests == 290  # the other service's request is not counted


def test_pages_are_merged(standin: MonitoringStandIn):
    standin.page_size = 3
    samples = source(standin).query("latency_p95_ms", "baseline", 600, end=END).samples
    assert len(samples) == 10 and sum("pageToken" in s["params"] for s in standin.seen) >= 3


def test_no_requests_means_no_data_not_zero(standin: MonitoringStandIn):
    s = source(standin)
    last_minute = s.query("error_ratio", "canary", 60, end=END)
    assert last_minute.samples == () and last_minute.requests == 0
    rules = parse_rules([{"metric": "error_ratio", "op": ">", "threshold": 0.05, "window_s": 60, "min_requests": 5}])
    result = check(rules, {"metrics": s}, now=END)
    assert result.verdict == "inconclusive" and result.results[0].reason.startswith("no data")


def test_rules_and_analysis_on_cloud_monitoring(standin: MonitoringStandIn):
    s = source(standin)
    rules = parse_rules(
        [
            {"metric": "error_ratio", "op": ">", "threshold": 0.05, "window_s": 600, "sustained_for_s": 120},
            {
                "metric": "latency_p95_ms",
                "op": ">",
                "threshold": 1.2,
                "relative_to": "baseline",
                "window_s": 600,
                "min_requests": 50,
            },
        ]
    )
    check_sources(rules, {"metrics": s})
    result = check(rules, {"metrics": s}, now=END)
    assert result.verdict == "fail"
    latency = result.results[1]
    assert latency.verdict == "fail" and latency.limit == pytest.approx(1.2 * 118.0)
    assert latency.judged == 9 and latency.samples == 9

    plan = AnalysisPlan(rules=rules, interval_s=60, failure_limit=1, deadline_s=3600)
    state = start(END - 120)
    for now in (END - 60, END):
        state = advance(plan, state, {"metrics": s}, now)
    assert state.decision == "rollback" and state.failures == 2


def test_errors_are_clear(standin: MonitoringStandIn):
    s = source(standin)
    with pytest.raises(MetricSourceError, match="window 30s is shorter than the alignment period 60s"):
        s.query("error_ratio", "canary", 30, end=END)
    with pytest.raises(MetricSourceError, match="scope 'database' has no revision"):
        s.query("error_ratio", "database", 600, end=END)
    with pytest.raises(MetricSourceError, match="metric 'pool_usage' is not available from the cloud_monitoring"):
        s.query("pool_usage", "canary", 600, end=END)
    with pytest.raises(ValueError, match="alignment_s must be >= 60"):
        CloudMonitoringSource("p", "svc", "europe-west1", {}, alignment_s=30)
    with pytest.raises(ValueError, match="location must name the service's region"):
        CloudMonitoringSource("p", "svc", "", {})
    # the API's own refusal reaches the caller with its status and message
    status, body = standin.handle("/v3/projects/p/timeSeries?filter=metric.type+%3D+%22x%22&view=FULL", {})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    bad = CloudMonitoringSource(
        "p", 'svc" OR "1', "europe-west1", {"canary": None}, endpoint=standin.url, credentials="anonymous"
    )
    assert bad.query("request_rate", "canary", 600, end=END).samples == ()  # quotes escaped, not injected
    down = CloudMonitoringSource(
        "p", "svc", "europe-west1", {"canary": None}, endpoint="http://127.0.0.1:9", credentials="anonymous",
        retries=1, backoff_s=0.01,
    )  # fmt: skip
    with pytest.raises(MetricSourceError, match="did not answer: ConnectionError"):
        down.query("error_ratio", "canary", 600, end=END)


def test_config_round_trip(standin: MonitoringStandIn):
    s = source(standin)
    again = source_from_config(s.to_config())
    assert isinstance(again, CloudMonitoringSource) and again.to_config() == s.to_config()
    ratio = again.query("error_ratio", "canary", 120, end=END - 60)
    assert len(ratio.samples) == 2 and all(not math.isnan(x.value) for x in ratio.samples)


def _regional(standin: MonitoringStandIn, location: str, scopes: dict[str, str | None]) -> CloudMonitoringSource:
    return CloudMonitoringSource(
        "demo-project", "svc", location, scopes, endpoint=standin.url, credentials="anonymous", backoff_s=0.01
    )


def test_each_region_reads_only_its_own_requests():
    """Three regions, one revision name (a deploy per region with the same change): 5xx in europe-west1
    must not read as the us-central1 canary's errors, and the service scope stays in its region."""
    with MonitoringStandIn() as standin:
        for location, failing in (("us-central1", 0), ("europe-west1", 5), ("asia-east1", 0)):
            standin.record(
                Request(END - 290 + i * 25, "svc-abc", 100.0, "5xx" if i < failing else "2xx", location=location)
                for i in range(10)
            )
        standin.record([Request(END - 100, "svc-abc", 100.0, "5xx", location="us-central1", project="elsewhere")])
        scopes = {"canary": "svc-abc", "service": None}
        us = _regional(standin, "us-central1", scopes)
        eu = _regional(standin, "europe-west1", scopes)
        assert us.query("error_ratio", "canary", 300, end=END).requests == 10
        assert max(x.value for x in us.query("error_ratio", "canary", 300, end=END).samples) == 0.0
        assert max(x.value for x in eu.query("error_ratio", "canary", 300, end=END).samples) > 0.0
        assert us.query("request_rate", "service", 300, end=END).requests == 10


def test_execution_errors_make_the_check_inconclusive(standin: MonitoringStandIn):
    standin.execution_errors = [{"code": 4, "message": "Query deadline exceeded for some time series"}]
    s = source(standin)
    with pytest.raises(PartialDataError, match=r"partial data .* 4: Query deadline exceeded"):
        s.query("error_ratio", "canary", 600, end=END)
    rules = parse_rules([{"metric": "error_ratio", "op": ">", "threshold": 0.05, "window_s": 600}])
    result = check(rules, {"metrics": s}, now=END)
    assert result.verdict == "inconclusive"
    assert "partial data" in result.results[0].reason and "deadline exceeded" in result.results[0].reason


def test_newest_periods_are_not_read_while_still_ingesting():
    """Requests up to now at 1/s; the service shows them after 90 s. Without a margin the newest periods
    look quiet (a false drop in traffic); with the default margin every period read is complete."""
    now = time.time()
    with MonitoringStandIn(ingestion_delay_s=90) as standin:
        standin.record(Request(now - 900 + i, "svc-002", 100.0) for i in range(900))
        naive = source(standin)
        naive.ingestion_delay_s = 0
        # the newest 90 s are not visible yet: whatever the aligned end (0–60 s ago), at least 30 s of the
        # 300 s window read as quiet — a false drop in traffic (by period it depends on the alignment)
        assert naive.query("request_rate", "canary", 300).requests <= 0.9 * 300
        careful = source(standin)  # default margin (Google documents up to ~4 minutes)
        series = careful.query("request_rate", "canary", 300)
        assert series.samples[-1].t <= now - 240
        assert [x.value for x in series.samples] == [pytest.approx(1.0)] * 5


def test_p95_counts_successful_requests_only():
    with MonitoringStandIn() as standin:
        # 40 fast failures (5 ms) and 60 successes at 200 ms: mixing them would put p95 on a failure's side
        standin.record(Request(END - 50 + i * 0.4, "svc-002", 5.0 if i < 40 else 200.0, "5xx" if i < 40 else "2xx")
                       for i in range(100))  # fmt: skip
        p95 = source(standin).query("latency_p95_ms", "canary", 60, end=END)
        assert [x.value for x in p95.samples] == [200.0] and p95.requests == 100


def test_transient_errors_are_retried_with_backoff(standin: MonitoringStandIn):
    standin.fail_next(503, 429)
    assert source(standin).query("error_ratio", "canary", 600, end=END).requests == 90
    standin.fail_next(503, 503, 503, 503)
    with pytest.raises(MetricSourceError, match=r"HTTP 503 UNAVAILABLE.*\(after 4 attempts\)"):
        source(standin).query("error_ratio", "canary", 600, end=END)
    standin.fail_next(400)  # not transient: no retry
    calls = len(standin.seen)
    with pytest.raises(MetricSourceError, match="HTTP 400"):
        source(standin).query("error_ratio", "canary", 600, end=END)
    assert len(standin.seen) == calls + 1
