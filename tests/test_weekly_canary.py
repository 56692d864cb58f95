"""The weekly DAG's canary part, end to end: Google's Cloud Run client against the local stand-in,
the canary analysis on a real PostgreSQL database, then promote or roll back.

The Prometheus side of the analysis is covered in test_metrics_prometheus.py; here the rule is a
database rule (long transactions) so a real breach can be held open from the test.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from dbopt.cloud.standin import StandIn
from tests.test_weekly_dag import run_plan, states

pytestmark = pytest.mark.airflow
PROJECT, REGION, SERVICE = "demo-project", "us-central1", "api"


def canary_plan(plan_id: str) -> str:
    return f"""
id: {plan_id}
targets: [{{name: db, conn_id: {plan_id}_db, dialect: postgres}}]
health_gate: {{long_transaction_s: 1}}
deploy:
  enabled: true
  project: {PROJECT}
  services: [{{name: {SERVICE}, region: {REGION}}}]
  env: {{DB_POOL_SIZE: "15"}}
  canary_percent: 10
monitor:
  duration_s: 8
  interval_s: 1
  required_passes: 3
  rules:
    - {{metric: long_transactions, op: ">", threshold: 0, scope: database, window_s: 5}}
"""


@pytest.fixture
def standin(monkeypatch):
    with StandIn() as s:
        s.run.seed(PROJECT, REGION, SERVICE)
        monkeypatch.setenv(
            "AIRFLOW_CONN_GOOGLE_CLOUD_RUN",
            json.dumps({"conn_type": "google_cloud_platform", "extra": s.extra(PROJECT)}),
        )
        yield s


def traffic(standin: StandIn) -> list[tuple[str, int]]:
    svc = standin.run.services[f"projects/{PROJECT}/locations/{REGION}/services/{SERVICE}"]
    return [(t.get("revision") or t.get("type"), t.get("percent", 0)) for t in svc["traffic"]]


def test_healthy_canary_is_promoted(pg_url, standin, tmp_path, monkeypatch):
    run, record = run_plan(canary_plan("t_canary_ok"), pg_url, tmp_path, monkeypatch)
    st = states(run)
    group = f"canary_{SERVICE}_{REGION}".replace("-", "_")
    assert str(run.state) == "success", st
    assert st[f"{group}.promote"] == "success" and st[f"{group}.rollback"] == "skipped"
    assert traffic(standin) == [("TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", 100)]
    assert record["tasks"]["monitor_canary"]["decision"] == "promote" and record["tasks"]["promote"]
    assert record["targets"]["db"]["extract"] == []  # an empty database: nothing to index, the canary still runs


def test_breaching_canary_is_rolled_back(pg_url, standin, tmp_path, monkeypatch):
    with psycopg.connect(pg_url, autocommit=True) as blocker:
        blocker.execute("BEGIN")
        blocker.execute("SELECT 1")  # a transaction that stays open: the database rule breaches
        run, _ = run_plan(canary_plan("t_canary_bad"), pg_url, tmp_path, monkeypatch)
        blocker.execute("ROLLBACK")
    st = states(run)
    group = f"canary_{SERVICE}_{REGION}".replace("-", "_")
    assert st[f"{group}.rollback"] == "success" and st[f"{group}.promote"] == "skipped", st
    assert traffic(standin) == [(f"{SERVICE}-00001-abc", 100)]  # the previous revision pinned at 100%
