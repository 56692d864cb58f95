"""The weekly DAG and the run lock: a run that finds the database held fails with the holder named,
a refused build fails its task (result recorded first) and the run, and a run's lease ends with it."""

from __future__ import annotations

import pytest

from dbopt.history import HistoryStore, leases
from dbopt.history.leases import Holder
from dbopt.targets import open_target
from tests.dag_runs import dbopt_indexes, run_plan, states
from tests.test_faults import _fill

pytestmark = pytest.mark.airflow


def _plan(plan_id: str, extra: str = "") -> str:
    return f"""
id: {plan_id}
targets: [{{name: db, conn_id: {plan_id}_db, dialect: sqlite}}]
health_gate: {{on_missing: ignore}}
indexes: {{auto_advice: false, explicit: [{{table: items, columns: [a]}}], min_table_rows: 0}}
benchmark: {{queries: [{{name: by_a, sql: "SELECT id, b FROM items WHERE a = 5"}}], iterations: 10, warmup: 1}}
{extra}
"""


def test_dag_run_while_a_cli_run_holds_the_database_fails_naming_it(sqlite_url, tmp_path, monkeypatch):
    _fill(sqlite_url, 5000)
    with open_target(sqlite_url) as target:
        key = target.identity()
    cli = Holder("cli-20261130T120000Z-laptop-777", "week17", "cli", "laptop", 777)
    with leases.opened() as engine:
        assert leases.claim(engine, key, cli, ttl_s=3600) is None
        try:
            run, record = run_plan(_plan("t_lock_busy"), sqlite_url, tmp_path, monkeypatch)
            st = states(run)
            assert str(run.state) == "failed" and st["health_check"] == "failed", st
            assert st["db.extract"] in ("upstream_failed", "skipped"), st
            assert dbopt_indexes(sqlite_url) == {}
            held = leases.current(engine, key)
            assert held is not None and held.run_id == cli.run_id, "the DAG's report releases only its own lease"
        finally:
            leases.release(engine, cli.run_id)
    with HistoryStore() as history:  # the failed task's reason, as its failure callback recorded it
        errors = repr([s for s in history.steps(record["run_id"], record["dag_id"]) if s["status"] == "failed"])
    assert "CLI run cli-20261130T120000Z-laptop-777 (plan week17) on host laptop, pid 777" in errors, errors[:3000]


def test_refused_build_fails_its_task_and_the_run_and_the_lease_ends_with_the_run(sqlite_url, tmp_path, monkeypatch):
    _fill(sqlite_url, 5000)
    # refused by the storage cap (a run outside its maintenance window now ends NO-GO before any build)
    plan = _plan("t_lock_refused").replace("min_table_rows: 0}", "min_table_rows: 0, storage_budget_mb: 0.001}")
    run, record = run_plan(plan, sqlite_url, tmp_path, monkeypatch)
    st = states(run)
    assert str(run.state) == "failed" and st["db.create_index[0]"] == "failed", st
    assert st["report"] == "success" and st["failed_run_watcher"] == "failed", st  # the watcher fails the run
    (result,) = record["targets"]["db"]["create_index"]
    assert result["status"] == "refused" and "exceeds the cap" in result["error"]
    assert dbopt_indexes(sqlite_url) == {}
    with open_target(sqlite_url) as target, leases.opened() as engine:
        assert leases.current(engine, target.identity()) is None
