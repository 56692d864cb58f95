"""Canary analysis end to end: demo service revisions → real Prometheus → rules → sensor and trigger.

The baseline and the good canary have 10 pooled connections; the bad canary has one, given up after
50 ms, so waves of 4 concurrent requests (each holding its connection 30 ms) half fail with 503.
The idle canary receives no traffic. Each scenario runs the sensor in poke mode and, at the same
time, the deferrable path (sensor → trigger run() loop → execute_complete): both must decide alike.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from dbopt.metrics.analysis import AnalysisPlan, replay
from dbopt.metrics.health_gate import health_gate
from dbopt.metrics.sources import MetricSourceError, PrometheusSource, sources_from_config
from dbopt.sensors.canary import CanaryAnalysisSensor
from tests.metrics_fixtures import DemoStack, demo_stack, loaded

__all__ = ["demo_stack"]  # the module-scoped fixture, imported for pytest

WINDOW = {"window_s": 5, "sustained_for_s": 2, "min_samples": 3, "min_requests": 15}
RULES = [
    {"name": "errors", "metric": "error_ratio", "op": ">", "threshold": 0.05, **WINDOW},
    {
        "name": "latency_vs_baseline",
        "metric": "latency_p95_ms",
        "op": ">",
        "threshold": 1.5,
        "relative_to": "baseline",
        **WINDOW,
    },
]


def plan(**overrides: Any) -> dict[str, Any]:
    return {
        "rules": RULES,
        "interval_s": 1,
        "warmup_s": 2,
        "deadline_s": 25,
        "required_passes": 3,
        "failure_limit": 1,
        "inconclusive_limit": 25,
        **overrides,
    }


def sources(stack: DemoStack, canary: str) -> dict[str, Any]:
    return {
        "metrics": {
            "kind": "prometheus",
            "url": stack.prometheus_url,
            "scopes": {"canary": {"revision": canary}, "baseline": {"revision": "baseline"}},
            "step_s": 1,
            "rate_window_s": 3,
        }
    }


def analyse_both_ways(plan_: dict[str, Any], sources_: dict[str, Any]) -> tuple[dict, dict]:
    """(poke-mode sensor result, deferrable sensor result via the trigger), run concurrently."""
    poked: dict[str, Any] = {}
    poke_sensor = CanaryAnalysisSensor(task_id="canary_poke", plan=plan_, sources=sources_, mode="poke",
                                       deferrable=False)  # fmt: skip
    worker = threading.Thread(target=lambda: poked.update(poke_sensor.execute({})))
    worker.start()

    deferring = CanaryAnalysisSensor(task_id="canary_deferred", plan=plan_, sources=sources_, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        deferring.execute({})
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = deferred.value.trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    trigger = getattr(importlib.import_module(module), name)(**kwargs)  # as the triggerer rebuilds it

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    via_trigger = deferring.execute_complete({}, asyncio.run(first_event()))
    worker.join(timeout=60)
    assert not worker.is_alive(), "the poke-mode sensor did not finish"
    return poked, via_trigger


def rule_results(outcome: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["rule"]: r for r in outcome["evidence"]["results"]}


def test_good_canary_is_promoted(demo_stack: DemoStack):
    with loaded([demo_stack.url("baseline"), demo_stack.url("canary-good")], duration_s=20):
        poked, via_trigger = analyse_both_ways(plan(), sources(demo_stack, "canary-good"))
    for result in (poked, via_trigger):
        assert result["decision"] == "promote", result["reason"]
        assert result["failures"] == 0
        assert result["reason"] == "3 passing checks in a row (required_passes 3)"
        errors = rule_results(result)["errors"]
        assert errors["verdict"] == "pass" and errors["value"] == 0.0 and errors["requests"] >= 15


def test_bad_canary_fails_within_the_window_and_is_rolled_back(demo_stack: DemoStack):
    with loaded([demo_stack.url("baseline"), demo_stack.url("canary-bad")], duration_s=20) as load:
        poked, via_trigger = analyse_both_ways(plan(), sources(demo_stack, "canary-bad"))
    assert load[demo_stack.url("canary-bad")].by_status.get("503", 0) > 0  # the pool really ran dry
    for result in (poked, via_trigger):
        assert result["decision"] == "rollback", result["reason"]
        assert result["reason"] == "2 failed checks > failure_limit 1"
        assert result["decided_at"] - result["started_at"] < 15  # well before the 25 s deadline
        errors = rule_results(result)["errors"]
        assert errors["verdict"] == "fail" and errors["value"] > 0.2
        assert all(p["t"] for p in errors["points"]) and errors["judged"] >= 3

    # Reschedule mode keeps no state: replaying the checks from Prometheus' history decides the same.
    srcs = sources_from_config(sources(demo_stack, "canary-bad"))
    replayed = replay(AnalysisPlan.from_dict(plan()), srcs, poked["started_at"], poked["decided_at"])
    assert replayed.decision == "rollback"


def test_canary_without_traffic_is_inconclusive_and_ends_in_the_safe_state(demo_stack: DemoStack):
    quiet = plan(warmup_s=0, deadline_s=5)
    with loaded([demo_stack.url("baseline")], duration_s=8):
        poked, via_trigger = analyse_both_ways(quiet, sources(demo_stack, "canary-idle"))
    for result in (poked, via_trigger):
        assert result["decision"] == "rollback"
        assert result["reason"].startswith("deadline 5s reached")
        assert result["failures"] == 0 and result["passes_in_row"] == 0
        assert {h["verdict"] for h in result["history"]} == {"inconclusive"}
        errors = rule_results(result)["errors"]
        assert errors["reason"].startswith("too few requests: canary served 0 requests")


def test_health_gate_from_prometheus(demo_stack: DemoStack):
    source = PrometheusSource(
        demo_stack.prometheus_url,
        {"baseline": {"revision": "baseline"}, "canary": {"revision": "canary-idle"}},
        step_s=1,
        rate_window_s=3,
    )
    healthy = [
        {"metric": "error_ratio", "op": ">", "threshold": 0.01, "scope": "baseline", **WINDOW},
        {"metric": "latency_p95_ms", "op": ">", "threshold": 500, "scope": "baseline", **WINDOW},
        {"metric": "pool_usage", "op": ">=", "threshold": 1.0, "scope": "baseline", "window_s": 5, "min_samples": 3},
    ]
    with loaded([demo_stack.url("baseline")], duration_s=6):
        threading.Event().wait(5)  # let a few scrapes land
        go = health_gate(healthy, {"metrics": source})
    assert go.decision == "GO", go.table()
    assert {f.verdict for f in go.figures} == {"pass"} and all(f.value is not None for f in go.figures)

    idle = health_gate([{**healthy[0], "scope": "canary"}], {"metrics": source})
    assert idle.decision == "NO-GO" and idle.figures[0].verdict == "inconclusive"
    assert "inconclusive: error_ratio[canary]" in idle.reason


def test_prometheus_source_edges(demo_stack: DemoStack):
    src = PrometheusSource(demo_stack.prometheus_url, {"canary": {"revision": "never-deployed"}, "service": {}})
    nothing = src.query("error_ratio", "canary", 30)
    assert nothing.samples == () and nothing.requests == 0.0  # no series = no data, not zero
    with pytest.raises(MetricSourceError, match="scope 'baseline' has no label selector"):
        src.query("error_ratio", "baseline", 30)

    broken = PrometheusSource(demo_stack.prometheus_url, {"service": {}}, queries={"bad": "sum(rate(x[$rate]"})
    with pytest.raises(MetricSourceError, match="HTTP 400 bad_data"):
        broken.query("bad", "service", 30)

    per_revision = PrometheusSource(
        demo_stack.prometheus_url,
        {"service": {}},
        queries={"by_rev": "sum by (revision) (db_pool_size$sel)"},
        step_s=1,  # the default 15 s step may align the window end before this Prometheus' first scrape
    )
    with pytest.raises(MetricSourceError, match=r"returned [2-4] series; a rule needs one"):
        per_revision.query("by_rev", "service", 10)

    assert src.promql("error_ratio", "canary", 30)[0] == (
        '(sum(rate(http_requests_total{code_class="5xx",revision="never-deployed"}[60000ms])) or vector(0)) '
        '/ sum(rate(http_requests_total{revision="never-deployed"}[60000ms]))'
    )
    quoted = PrometheusSource("http://127.0.0.1:9", {"canary": {"revision": 'a"b\\c'}})
    assert '{revision="a\\"b\\\\c"}' in quoted.promql("request_rate", "canary", 30)[0]
