"""The history store on real SQLite files and a real PostgreSQL database: append-only, no duplicate
and no lost rows across reruns, retries and a crash between steps."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import inspect, text

from dbopt.history import HistoryError, HistorySchemaError, HistoryStore
from dbopt.history.migrations import MIGRATIONS, Migration, current_version, upgrade
from dbopt.history.store import make_engine
from dbopt.results import Workload
from dbopt.targets.base import Statement
from tests.run_records import measured_record, no_go_record

DAG, RUN = "dbopt_orders", "scheduled__2026-11-23T00:00:00+00:00"
T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def history_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'history.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(history_url):
    with HistoryStore(history_url) as s:
        yield s


def step(store: HistoryStore, name: str, try_number: int, status: str = "success", **payload) -> bool:
    return store.record_step("orders", DAG, RUN, "shop", name, None, try_number, status, payload or None,
                             started_at=T0, finished_at=T0 + timedelta(seconds=2))  # fmt: skip


def test_schema_is_created_once_and_versioned(history_url):
    HistoryStore(history_url).close()
    engine = make_engine(history_url)
    try:
        assert upgrade(engine) == MIGRATIONS[-1].version  # second run: nothing to do
        with engine.connect() as conn:
            assert current_version(conn) == MIGRATIONS[-1].version
            assert conn.execute(text("SELECT count(*) FROM dbopt_schema_version")).scalar() == 1
            assert {"dbopt_runs", "dbopt_steps", "dbopt_scaling"} <= set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_a_later_migration_runs_once_on_an_existing_database(history_url):
    HistoryStore(history_url).close()
    engine = make_engine(history_url)
    n = MIGRATIONS[-1].version + 1
    nxt = Migration(n, "test: notes table", lambda c: c.execute(text("CREATE TABLE dbopt_test_notes (id INTEGER)")))
    try:
        assert upgrade(engine, (*MIGRATIONS, nxt)) == n
        assert upgrade(engine, (*MIGRATIONS, nxt)) == n  # applied once: a second CREATE TABLE would fail
        with engine.connect() as conn:
            assert current_version(conn) == n and inspect(conn).has_table("dbopt_test_notes")
        with pytest.raises(HistorySchemaError, match=f"schema version {n}, newer than this dbopt knows"):
            HistoryStore(history_url)
    finally:
        engine.dispose()


def _with_unused_drop(record: dict, run_id: str) -> dict:
    """The record with a ``drop_unused`` drop of an existing index beside its revert of a dbopt index."""
    (revert,) = record["targets"]["shop"]["revert_indexes"]["indexes"]
    unused = revert | {"index": "ix_orders_legacy", "statement": 'DROP INDEX "ix_orders_legacy"', "reason": "unused"}
    shop = record["targets"]["shop"] | {"drop_unused": {"indexes": [unused], "reason": ""}}
    return record | {"run_id": run_id, "targets": {"shop": shop}}


def test_index_changes_name_their_step_and_rows_from_schema_2_stay_reverts(history_url, tmp_path):
    """A drop of an unused index is not a revert of the run's own index. Schema 3 records each change's
    step; rows an older dbopt wrote (schema 2, no step) keep the count they had: every drop a revert.
    Schema 2 on PostgreSQL also could not hold a canary's decision line (varchar(16)); schema 3 can."""
    record = measured_record(tmp_path)
    engine = make_engine(history_url)
    try:
        with HistoryStore(history_url) as store:  # a run schema 2 could hold: no canary
            store.record_run(_with_unused_drop(record, "manual__old") | {"canaries": {}})
        with engine.begin() as conn:  # the schema as version 2 left it, with that run in it
            conn.execute(text("ALTER TABLE dbopt_index_changes DROP COLUMN step"))
            if conn.dialect.name == "postgresql":
                conn.execute(text("ALTER TABLE dbopt_runs ALTER COLUMN canary_decision TYPE VARCHAR(16)"))
                conn.execute(text("ALTER TABLE dbopt_health ALTER COLUMN rule TYPE VARCHAR(200)"))
            conn.execute(text("UPDATE dbopt_schema_version SET version = 2"))
        with HistoryStore(history_url) as store:  # upgrades to 3
            store.record_run(_with_unused_drop(record, "manual__new"))
            runs = {r["run_id"]: r for r in store.runs(T0 - timedelta(days=3650))}
        with engine.connect() as conn:
            assert current_version(conn) == 3
    finally:
        engine.dispose()
    counts = {k: (r["indexes_reverted"], r["indexes_dropped_unused"]) for k, r in runs.items()}
    assert counts == {"manual__old": (2, 0), "manual__new": (1, 1)}
    assert runs["manual__new"]["canary_decision"] == "api/us-central1: promote"


def test_crash_between_steps_then_retry_loses_and_duplicates_nothing(store):
    assert step(store, "extract", 1, rows=2)
    assert step(store, "advise", 1, create=1)
    assert step(store, "create_index", 1, "failed", error="database is locked")
    # The worker died after writing; the same attempts are reported again (no new try number) ...
    assert not step(store, "advise", 1, create=99)
    assert not step(store, "create_index", 1, "failed", error="again")
    # ... and the real retry is attempt 2.
    assert step(store, "create_index", 2, index="dbopt_orders_customer_id")

    steps = store.steps(RUN)
    assert [(s["step"], s["try_number"], s["status"]) for s in steps] == [
        ("extract", 1, "success"),
        ("advise", 1, "success"),
        ("create_index", 1, "failed"),
        ("create_index", 2, "success"),
    ]
    assert steps[1]["payload"] == {"create": 1}  # the first write stands; nothing was overwritten
    assert steps[0]["duration_s"] == 2.0 and steps[0]["started_at"] == T0


def test_a_task_instance_is_recorded_as_its_target_and_step(store):
    ti = SimpleNamespace(dag_id=DAG, run_id=RUN, task_id="shop.create_index", map_index=2, try_number=3,
                         start_date=datetime.now(UTC) - timedelta(seconds=5))  # fmt: skip
    assert store.record_task("orders", ti, "failed", {"error": "lock timeout"})
    assert not store.record_task("orders", ti, "failed", {"error": "lock timeout"})
    (row,) = store.steps(RUN)
    assert (row["target"], row["step"], row["map_index"], row["try_number"]) == ("shop", "create_index", 2, 3)
    assert 5 <= row["duration_s"] < 60


def test_same_run_id_in_two_dags_are_two_runs(store):
    assert step(store, "extract", 1)
    assert store.record_step("other", "dbopt_other", RUN, "shop", "extract", None, 1, "success", None)
    assert len(store.steps(RUN)) == 2 and len(store.steps(RUN, dag_id=DAG)) == 1


def test_concurrent_writers_of_one_attempt_leave_one_row(store):
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def write() -> None:
        barrier.wait(timeout=10)
        results.append(step(store, "backup", 1))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [False, False, False, True]
    assert len(store.steps(RUN)) == 1


def test_rerun_of_the_same_run_appends_and_reports_the_newest(store):
    first = no_go_record(RUN)
    since = datetime.now(UTC) - timedelta(minutes=1)
    first_pk = store.record_run(first)
    assert first_pk is not None
    assert store.record_run(copy.deepcopy(first)) is None  # the report task retried: same record

    rerun = copy.deepcopy(first)
    rerun["tasks"]["health_check"]["decision"] = "GO"
    rerun["tasks"]["health_check"]["reason"] = "all 1 figures pass"
    rerun["tasks"]["health_check"]["targets"]["shop"]["figures"][0] |= {"value": 41.0, "verdict": "pass"}
    assert store.record_run(rerun) not in (None, first_pk)

    latest = store.runs(since)
    assert [(r["run_id"], r["gate_decision"]) for r in latest] == [(RUN, "GO")]
    every = store.runs(since, latest_only=False)
    assert [r["gate_decision"] for r in every] == ["NO-GO", "GO"]
    assert store.record(DAG, RUN)["tasks"]["health_check"]["decision"] == "GO"
    health = store.latest_health("orders")
    assert health["gate_decision"] == "GO" and [f["value"] for f in health["figures"]] == [41.0]
    with store.engine.connect() as conn:  # one figure per recorded record, none duplicated
        assert conn.execute(text("SELECT count(*) FROM dbopt_health")).scalar() == 2


def test_scaling_changes_are_recorded_once(store):
    change = {"service": "api", "region": "asia-northeast3", "window": "business-hours", "local_time": "Mon 09:00 KST",
              "before": {"min_instances": 1, "max_instances": 10}, "after": {"min_instances": 3, "max_instances": 20},
              "applied": True}  # fmt: skip
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert store.record_scaling("dbopt_scaling", "scheduled__2026-11-23T00:00:00+00:00", [change]) == 1
    assert store.record_scaling("dbopt_scaling", "scheduled__2026-11-23T00:00:00+00:00", [change]) == 0
    actions = store.scaling_actions(since)
    assert [(a["service"], a["before_min"], a["after_min"], a["applied"]) for a in actions] == [("api", 1, 3, True)]
    with pytest.raises(HistoryError, match=r"scaling change #0: missing or bad field 'before'"):
        store.record_scaling("dbopt_scaling", "r2", [{"service": "api", "region": "x"}])
    assert len(store.scaling_actions(since)) == 1  # the bad batch wrote nothing


def _run_with_workload(run_id: str, started: datetime, mean_ms: float) -> dict:
    record = no_go_record(run_id)
    record["started"] = started.isoformat()
    record["targets"]["shop"]["extract"] = Workload(
        "querylog",
        (Statement("a", "SELECT 1", 10, 10 * mean_ms, mean_ms), Statement("b", "SELECT 2", 30, 30 * mean_ms, mean_ms)),
    ).to_dict()
    return record


def test_trend_per_week_uses_the_newest_record_of_each_run(store):
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)  # a Thursday
    store.record_run(_run_with_workload("w46", now - timedelta(weeks=2), 8.0))
    store.record_run(_run_with_workload("w48", now - timedelta(days=2), 20.0))
    store.record_run(_run_with_workload("w48", now - timedelta(days=2), 4.0))  # rerun: supersedes 20 ms

    weeks = store.trend("orders", 3, until=now)
    assert [w["week"] for w in weeks] == ["2026-W46", "2026-W47", "2026-W48"]
    assert [w["runs"] for w in weeks] == [1, 0, 1]
    assert [w["workload_mean_ms"] for w in weeks] == [8.0, None, 4.0]
    assert weeks[2]["no_go"] == 1


def test_bad_input_is_refused_with_the_field_named(store, tmp_path):
    with pytest.raises(HistoryError, match="field 'run_id' is missing"):
        store.record_run({"plan": "orders", "dag_id": DAG})
    with pytest.raises(HistoryError, match=r"started_at: .* has no time zone"):
        store.record_step("orders", DAG, RUN, "", "x", None, 1, "success", None, started_at=datetime(2026, 1, 1))
    with pytest.raises(HistoryError, match="unsupported database 'mysql'"):
        HistoryStore("mysql://root@127.0.0.1/x")
    assert store.steps(RUN) == []
