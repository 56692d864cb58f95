"""Cloud SQL downsizing by replica: Google's sqladmin client against the stand-in, benchmarks on real PostgreSQL.

The "replica" database is a copy of the primary's (CREATE DATABASE … TEMPLATE), as a read replica is;
the smaller machine that cannot cope is the copy without the index the workload needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from dbopt.bench import BenchQuery
from dbopt.cloud.cloudsql import CloudSQL
from dbopt.cloud.gcp import GcpSettings
from dbopt.cloud.resize import (
    PREVIOUS_TIER_LABEL,
    STANDBY_LABEL,
    ReplicaBench,
    ResizeSpec,
    bench_replica,
    cleanup_standbys,
    resize_by_replica,
    rollback,
    spec_from_plan,
)
from dbopt.cloud.standin import StandIn
from dbopt.plan import PlanError, parse_plan
from dbopt.targets import open_target

# serial: runs alone after the parallel tests (Makefile); its verdicts are timings, taken alone
pytestmark = pytest.mark.serial

PROJECT = "ion-mentoring"
BIG, SMALL = "db-custom-16-32768", "db-custom-8-16384"
SPEC = ResizeSpec(PROJECT, "ion-primary", "ion-primary-resized", SMALL, standby_hours=48, ready_timeout_s=5)
NOW = 1_790_000_000.0
QUERIES = [BenchQuery("by_customer", tuple(f"SELECT id, amount FROM orders WHERE customer_id = {c}" for c in
                                           (7, 42, 1234, 9000, 15000)))]  # fmt: skip


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with StandIn(lro_polls=1) as server:
        server.sql.seed(PROJECT, "ion-primary", tier=BIG)
        yield server


def _sql(stand_in: StandIn) -> CloudSQL:
    return CloudSQL.connect(GcpSettings.from_extra(stand_in.extra(PROJECT), source="test"), poll_s=0.01, timeout_s=5)


@pytest.fixture
def primary_and_replica(pg_url: str) -> Iterator[tuple[str, str]]:
    """The primary's database (orders, indexed on customer_id) and a copy of it standing for the replica."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric)")
        conn.execute("INSERT INTO orders SELECT g, g % 20000, g % 977 FROM generate_series(1, 200000) g")
        conn.execute("CREATE INDEX orders_customer ON orders (customer_id)")
        conn.execute("ANALYZE orders")
    admin_url, primary_db = pg_url.rsplit("/", 1)
    name = f"dbopt_r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{primary_db}"')
        try:
            yield pg_url, f"{admin_url}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bench(primary_url: str, replica_url: str):
    def run() -> ReplicaBench:
        with open_target(primary_url) as primary, open_target(replica_url) as replica:
            return bench_replica(primary, replica, QUERIES, iterations=6, warmup=2, rounds=3, min_effect=0.5,
                                 alpha=0.01, targets={"p95_ms": 50})  # fmt: skip

    return run


def _labels(stand_in: StandIn, name: str) -> dict[str, str]:
    return stand_in.sql.instances[(PROJECT, name)]["settings"].get("userLabels", {})


def test_replica_that_holds_is_promoted_and_the_old_primary_kept_as_standby(
    stand_in: StandIn, primary_and_replica: tuple[str, str]
) -> None:
    sql = _sql(stand_in)
    result = resize_by_replica(sql, SPEC, _bench(*primary_and_replica), now=NOW)

    assert result.decision == "switched", result.reason
    assert (result.active_instance, result.standby_instance) == ("ion-primary-resized", "ion-primary")
    assert [s.name for s in result.steps] == ["check", "create_replica", "benchmark", "promote", "standby"]
    assert result.benchmark and result.benchmark.holds and result.benchmark.targets["passed"]
    new = stand_in.sql.instances[(PROJECT, "ion-primary-resized")]
    assert new["settings"]["tier"] == SMALL and new["instanceType"] == "CLOUD_SQL_INSTANCE"
    assert "masterInstanceName" not in new and stand_in.sql.instances[(PROJECT, "ion-primary")]["replicaNames"] == []
    assert _labels(stand_in, "ion-primary")[STANDBY_LABEL] == str(int(NOW + 48 * 3600))
    assert _labels(stand_in, "ion-primary-resized")[PREVIOUS_TIER_LABEL] == BIG
    insert = [op for op in stand_in.sql.operations.values() if op["operationType"] == "CREATE_REPLICA"]
    assert len(insert) == 1 and insert[0]["targetId"] == "ion-primary-resized"

    # The standby is deleted by a later run after its 48 hours, never earlier.
    assert [a.action for a in cleanup_standbys(sql, now=NOW + 47.9 * 3600)] == ["kept"]
    assert [a.action for a in cleanup_standbys(sql, now=NOW + 48 * 3600, dry_run=True)] == ["would_delete"]
    assert (PROJECT, "ion-primary") in stand_in.sql.instances
    assert [a.action for a in cleanup_standbys(sql, now=NOW + 48 * 3600)] == ["deleted"]
    assert (PROJECT, "ion-primary") not in stand_in.sql.instances


def test_replica_that_never_becomes_ready_is_deleted_and_nothing_switched(stand_in: StandIn) -> None:
    stand_in.sql.failing_replicas.add("ion-primary-resized")

    def no_benchmark() -> ReplicaBench:
        raise AssertionError("a replica that is not ready must not be benchmarked")

    result = resize_by_replica(_sql(stand_in), SPEC, no_benchmark, now=NOW)
    assert result.decision == "failed" and "never became ready" in result.reason
    assert [(s.name, s.status) for s in result.steps] == [
        ("check", "done"), ("create_replica", "failed"), ("delete_replica", "done")]  # fmt: skip
    assert (PROJECT, "ion-primary-resized") not in stand_in.sql.instances
    assert result.active_instance == "ion-primary" and _labels(stand_in, "ion-primary") == {}


def test_replica_that_fails_the_benchmark_is_deleted_and_nothing_switched(
    stand_in: StandIn, primary_and_replica: tuple[str, str]
) -> None:
    primary_url, replica_url = primary_and_replica
    with psycopg.connect(replica_url, autocommit=True) as conn:
        conn.execute("DROP INDEX orders_customer")  # the weaker replica: every lookup scans 200k rows

    result = resize_by_replica(_sql(stand_in), SPEC, _bench(primary_url, replica_url), now=NOW)
    assert result.decision == "not_switched", result.reason
    assert "slower on the replica: by_customer" in result.reason
    assert result.benchmark and not result.benchmark.holds
    assert ("POST", f"/v1/projects/{PROJECT}/instances/ion-primary-resized/promoteReplica") not in stand_in.requests
    assert (PROJECT, "ion-primary-resized") not in stand_in.sql.instances
    assert _labels(stand_in, "ion-primary") == {}
    assert stand_in.sql.instances[(PROJECT, "ion-primary")]["settings"]["tier"] == BIG


def test_rollback_by_switching_back_or_by_tier_patch(stand_in: StandIn) -> None:
    sql = _sql(stand_in)
    result = resize_by_replica(sql, SPEC, lambda: ReplicaBench(True, "held", {}, None), now=NOW)
    assert result.decision == "switched"

    back = rollback(sql, SPEC, "switch_back", now=NOW + 3600)
    assert [s.name for s in back] == ["switch_back"]
    assert STANDBY_LABEL not in _labels(stand_in, "ion-primary")  # active again: never deleted by cleanup
    assert _labels(stand_in, "ion-primary-resized")[STANDBY_LABEL] == str(int(NOW + 3600 + 48 * 3600))
    assert [(a.instance, a.action) for a in cleanup_standbys(sql, now=NOW + 49 * 3600 + 1)] == [
        ("ion-primary-resized", "deleted")]  # fmt: skip

    stand_in.sql.seed(PROJECT, "ion-primary-resized", tier=SMALL)
    with pytest.raises(Exception, match="not switched by dbopt"):
        rollback(sql, SPEC, "tier")
    sql.set_labels("ion-primary-resized", {PREVIOUS_TIER_LABEL: BIG})
    assert rollback(sql, SPEC, "tier", dry_run=True)[0].status == "planned"
    assert stand_in.sql.instances[(PROJECT, "ion-primary-resized")]["settings"]["tier"] == SMALL
    rollback(sql, SPEC, "tier")
    assert stand_in.sql.instances[(PROJECT, "ion-primary-resized")]["settings"]["tier"] == BIG


def test_dry_run_shows_every_step_and_changes_nothing(stand_in: StandIn) -> None:
    result = resize_by_replica(_sql(stand_in), SPEC, lambda: pytest.fail("no benchmark in a dry run"), now=NOW,
                               dry_run=True)  # fmt: skip
    assert result.decision == "dry_run"
    assert [(s.name, s.status) for s in result.steps] == [
        ("check", "planned"), ("create_replica", "planned"), ("benchmark", "planned"), ("promote", "planned"),
        ("standby", "planned")]  # fmt: skip
    assert "masterInstanceName ion-primary, tier db-custom-8-16384" in result.steps[1].detail
    assert [m for m, _ in stand_in.requests] == ["GET"]  # only the primary's tier was read


PLAN = """
id: resize
targets:
  - name: ion-primary
    conn_id: ion_primary_pg
    dialect: postgres
    cloud_sql:
      project: ion-mentoring
      instance: ion-primary
      resize: {tier: db-custom-8-16384, standby_hours: 48, replica_conn_id: ion_replica_pg}
"""


def test_plan_section() -> None:
    spec = spec_from_plan(parse_plan(PLAN).targets[0].cloud_sql)
    assert spec == ResizeSpec(PROJECT, "ion-primary", "ion-primary-resized", SMALL, 48.0, 3600.0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("tier: db-custom-8-16384", "tier: big"), "resize.tier: 'big' is not a Cloud SQL tier"),
        (("standby_hours: 48", "standby_hours: 48, replica: Ion_Small"), "resize.replica: 'Ion_Small': instance"),
        ((", replica_conn_id: ion_replica_pg", ""), "resize.replica_conn_id: Field required — add it"),
        (("standby_hours: 48", "standby_hour: 48"), "did you mean 'standby_hours'?"),
    ],
)
def test_plan_section_errors_name_field_and_fix(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(PlanError) as err:
        parse_plan(PLAN.replace(*edit), "week.yaml")
    assert message in str(err.value)


DAG_PLAN = """
id: resizedag
targets:
  - name: ion-primary
    conn_id: resize_primary
    dialect: sqlite
    cloud_sql:
      project: ion-mentoring
      instance: ion-primary
      conn_id: resize_gcp
      resize: {tier: db-custom-8-16384, standby_hours: 48, replica_conn_id: resize_replica}
benchmark:
  iterations: 10
  warmup: 2
  min_effect: 0.5
  targets: {p95_ms: 100}
  queries:
    - name: by_customer
      sql:
        - "SELECT id, amount FROM orders WHERE customer_id = 7"
        - "SELECT id, amount FROM orders WHERE customer_id = 42"
"""


@pytest.mark.airflow
def test_resize_dag_switches_and_dry_run_changes_nothing(stand_in: StandIn, tmp_path, monkeypatch) -> None:
    import json
    import shutil
    import sqlite3

    from dags.dbopt_cloud_sql_resize import build_resize_dag
    from dbopt.plan import load_plan
    from tests.dag_runs import connection_env

    primary, replica = tmp_path / "primary.db", tmp_path / "replica.db"
    with sqlite3.connect(primary) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INT, amount REAL)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, i % 500, i % 97) for i in range(20000)])
        db.execute("CREATE INDEX orders_customer ON orders (customer_id)")
    shutil.copy(primary, replica)  # the replica holds the same data
    plans = tmp_path / "plans"
    plans.mkdir()
    path = plans / "resizedag.yaml"
    path.write_text(DAG_PLAN)
    monkeypatch.setenv("DBOPT_PLANS_DIR", str(plans))
    monkeypatch.setenv(*connection_env("resize_primary", f"sqlite:///{primary}"))
    monkeypatch.setenv(*connection_env("resize_replica", f"sqlite:///{replica}"))
    conn = {"conn_type": "google_cloud_platform", "extra": stand_in.extra(PROJECT)}
    monkeypatch.setenv("AIRFLOW_CONN_RESIZE_GCP", json.dumps(conn))
    dag = build_resize_dag(load_plan(path), path)

    assert str(dag.test(run_conf={"dry_run": True}).state) == "success"
    assert (PROJECT, "ion-primary-resized") not in stand_in.sql.instances
    assert str(dag.test(run_conf={"dry_run": False}).state) == "success"
    new = stand_in.sql.instances[(PROJECT, "ion-primary-resized")]
    assert new["instanceType"] == "CLOUD_SQL_INSTANCE" and new["settings"]["tier"] == SMALL
    assert STANDBY_LABEL in _labels(stand_in, "ion-primary")
