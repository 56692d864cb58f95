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
from tests.dag_runs import run_plan, states

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
    canary = record["canaries"][f"{SERVICE}/{REGION}"]
    assert canary["monitor"]["decision"] == "promote" and canary["promote"]
    # an empty database: nothing to index, the canary still runs
    assert record["targets"]["db"]["extract"]["statements"] == []


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


def test_inconclusive_canary_rolls_back_and_reverts_indexes_with_cloud_sql_backup(
    sqlite_demo, standin, tmp_path, monkeypatch
):
    """SQLite cannot report long transactions: the analysis stays inconclusive, the plan's safe state is
    rollback, and the plan asks for this run's indexes to be reverted with it. The target names a Cloud SQL
    instance, so the managed backup runs before any index is built."""
    standin.sql.seed(PROJECT, "worklogs-primary")
    conn = {"conn_type": "google_cloud_platform", "extra": standin.extra(PROJECT)}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_SQL", json.dumps(conn))
    text = f"""
id: t_canary_revert
targets:
  - name: db
    conn_id: t_canary_revert_db
    dialect: sqlite
    cloud_sql: {{project: {PROJECT}, instance: worklogs-primary}}
health_gate: {{on_missing: ignore}}
workload: {{min_calls: 2, top_n: 12}}
indexes: {{min_table_rows: 1000}}
benchmark: {{from_workload: 6, iterations: 10, warmup: 1}}
deploy:
  enabled: true
  project: {PROJECT}
  services: [{{name: {SERVICE}, region: {REGION}}}]
  env: {{DB_POOL_SIZE: "15"}}
monitor:
  duration_s: 6
  interval_s: 1
  inconclusive_limit: 1
  on_inconclusive: rollback
  revert_indexes_on_rollback: true
  rules: [{{metric: long_transactions, op: ">", threshold: 0, scope: database, window_s: 5}}]
"""
    run, record = run_plan(text, sqlite_demo, tmp_path, monkeypatch)
    st = states(run)
    group = f"canary_{SERVICE}_{REGION}".replace("-", "_")
    assert st["db.cloud_sql_backup"] == "success", st
    (backup,) = standin.sql.backups[(PROJECT, "worklogs-primary")]
    assert "t_canary_revert" in backup.get("description", ""), backup
    assert st[f"{group}.rollback"] == "success" and st[f"{group}.promote"] == "skipped", st
    kept = [d["index"] for d in record["targets"]["db"]["judge"]["indexes"] if d["keep"]]
    assert kept, record["targets"]["db"]["judge"]
    reverted = record["canaries"][f"{SERVICE}/{REGION}"]["revert_indexes_after_rollback"]["targets"]["db"]
    assert sorted(r["index"] for r in reverted if r["status"] == "dropped") == sorted(kept)
    assert traffic(standin) == [(f"{SERVICE}-00001-abc", 100)]
