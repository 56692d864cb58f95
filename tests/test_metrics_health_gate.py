"""The GO / NO-GO health gate, and the database health source on real PostgreSQL and SQLite."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from dbopt.metrics.health_gate import health_gate
from dbopt.metrics.sources import DatabaseSource, MetricSourceError, source_from_config
from dbopt.targets import open_target
from include.demo_service.app import seed
from tests.metrics_fixtures import StaticSource

OK = ([(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)], 100)


def test_go_only_when_every_figure_passes():
    src = StaticSource({("error_ratio", "service"): OK, ("latency_p95_ms", "service"): ([(3.0, 120.0)], 100)})
    rules = [
        {"metric": "error_ratio", "op": ">", "threshold": 0.01, "scope": "service", "window_s": 60},
        {"metric": "latency_p95_ms", "op": ">", "threshold": 250, "scope": "service", "window_s": 60},
    ]
    go = health_gate(rules, {"metrics": src})
    assert go.decision == "GO" and go.reason == "all 2 figures pass"
    latency = go.figures[1]
    assert (latency.metric, latency.op, latency.threshold, latency.value, latency.verdict) == (
        "latency_p95_ms",
        ">",
        250,
        120.0,
        "pass",
    )
    json.dumps(go.to_dict(), allow_nan=False)
    assert "latency_p95_ms[service]" in go.table() and "(fail if > 250)" in go.table()


def test_inconclusive_figure_closes_the_gate():
    src = StaticSource({("error_ratio", "service"): OK, ("latency_p95_ms", "service"): ([(3.0, 900.0)], 100)})
    rules = [
        {"metric": "error_ratio", "op": ">", "threshold": 0.01, "scope": "service", "min_requests": 500},
        {"metric": "latency_p95_ms", "op": ">", "threshold": 250, "scope": "service"},
    ]
    no_go = health_gate(rules, {"metrics": src})
    assert no_go.decision == "NO-GO"
    assert no_go.reason == "failing: latency_p95_ms[service]; inconclusive: error_ratio[service]"
    assert [f.verdict for f in no_go.figures] == ["inconclusive", "fail"]


def test_gate_rejects_a_rule_its_sources_cannot_answer():
    with pytest.raises(ValueError, match="needs source 'database'"):
        health_gate([{"metric": "cache_hit_ratio", "op": "<", "threshold": 0.9, "scope": "database"}], {})


def test_database_health_on_postgres(pg_url: str):
    db = DatabaseSource(url=pg_url, long_transaction_s=1.0, min_reading_interval_s=0.0)
    try:
        rules = [
            {"metric": "connections_ratio", "op": ">", "threshold": 0.95, "scope": "database", "window_s": 60},
            {"metric": "long_transactions", "op": ">", "threshold": 0, "scope": "database", "window_s": 60},
        ]
        go = health_gate(rules, {"database": db})
        assert go.decision == "GO", go.table()
        assert 0 < go.figures[0].value < 0.95 and go.figures[1].value == 0

        # no replica reports lag: the engine cannot tell, so the figure is "no data" and the gate stays shut
        lag = {"metric": "replication_lag_s", "op": ">", "threshold": 5, "scope": "database", "window_s": 60}
        shut = health_gate([*rules, lag], {"database": db})
        assert shut.decision == "NO-GO" and shut.figures[2].reason.startswith("no data")

        # a transaction left open past long_transaction_s fails the gate, sustained over two readings
        with psycopg.connect(pg_url) as idle_in_tx:
            idle_in_tx.execute("SELECT 1")  # opens the transaction (psycopg is not in autocommit)
            time.sleep(1.3)
            sustained = {**rules[1], "sustained_for_s": 0.5, "min_samples": 2, "window_s": 1.5}
            first = health_gate([sustained], {"database": db})
            time.sleep(0.6)
            second = health_gate([sustained], {"database": db})
        assert first.figures[0].verdict == "inconclusive"  # breaching, not yet for 0.5 s
        assert second.decision == "NO-GO" and second.figures[0].verdict == "fail"
        assert second.figures[0].value >= 1
    finally:
        db.close()


def test_database_source_on_sqlite_says_no_data(sqlite_url: str):
    seed(sqlite_url, rows=10)
    with open_target(sqlite_url) as target:
        db = DatabaseSource(target=target)
        figure = db.query("cache_hit_ratio", "database", 60)
        assert figure.samples == () and figure.requests is None
        with pytest.raises(ValueError, match="cannot be serialized"):
            db.to_config()
        with pytest.raises(MetricSourceError, match="only answers scope 'database'"):
            db.query("cache_hit_ratio", "canary", 60)
        with pytest.raises(MetricSourceError, match="the past cannot be queried"):
            db.query("cache_hit_ratio", "database", 60, end=time.time() - 3600)


def test_source_configs_are_checked():
    with pytest.raises(ValueError, match="kind' must be one of"):
        source_from_config({"kind": "graphite"})
    with pytest.raises(ValueError, match="unexpected keyword argument 'adress'"):
        source_from_config({"kind": "prometheus", "adress": "x", "url": "http://127.0.0.1:9", "scopes": {}})
    with pytest.raises(ValueError, match="exactly one of url"):
        DatabaseSource()
