"""Real DAG runs of the weekly plan DAG (``dag.test()`` / ``airflow dags test``) against real servers.

GO path with indexes kept (SQLite, PostgreSQL, MariaDB); NO-GO (a real long transaction) changing
nothing; a no-gain index measured and reverted; a run killed mid-build and run again without
duplicate or lost work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from dbopt.demo_data import generate, replay
from dbopt.history import HistoryStore, facts
from dbopt.targets import open_target
from tests.dag_runs import connection_env, dbopt_indexes, plan_yaml, run_plan, states

# serial: runs alone after the parallel tests (Makefile); it resets server-wide statement statistics
# (performance_schema digests, pg_qualstats) that other tests read their workloads from
pytestmark = [pytest.mark.airflow, pytest.mark.serial]
ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.02  # big tables ~20k rows: enough for an index to matter, quick to build


def test_go_path_keeps_indexes_sqlite(sqlite_demo, tmp_path, monkeypatch):
    run, record = run_plan(plan_yaml("t_go_sqlite", "sqlite"), sqlite_demo, tmp_path, monkeypatch)
    st = states(run)
    assert str(run.state) == "success", st
    assert record["tasks"]["health_check"]["decision"] == "GO"
    db = record["targets"]["db"]
    assert db["backup"]["verified"] is True
    created = [c for c in db["create_index"] if c["status"] == "created"]
    assert created, db["advise"]
    kept = [d["index"] for d in db["judge"]["indexes"] if d["keep"]]
    assert kept, db["judge"]
    assert set(kept) <= set(dbopt_indexes(sqlite_demo))
    reverted = set(db["judge"]["revert"])
    assert not reverted & set(dbopt_indexes(sqlite_demo)), "reverted indexes must be gone"
    assert st["failed_run_watcher"] == "skipped"


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_go_path_keeps_indexes_servers(engine, request, tmp_path, monkeypatch):
    url = request.getfixturevalue("pg_url" if engine == "postgres" else "mysql_url")
    generate(url, scale=SCALE)
    with open_target(url) as target:
        target.reset_workload()
    replay(url, statements=200, scale=SCALE)
    run, record = run_plan(plan_yaml(f"t_go_{engine}", engine), url, tmp_path, monkeypatch)
    assert str(run.state) == "success", states(run)
    db = record["targets"]["db"]
    assert db["extract"], "workload extraction found nothing"
    kept = [d["index"] for d in db["judge"]["indexes"] if d["keep"]]
    assert kept, json.dumps(db["judge"]["indexes"], indent=1)
    assert set(kept) <= set(dbopt_indexes(url))
    assert all(dbopt_indexes(url).values()), "no INVALID index may be left behind"


def test_no_go_changes_nothing(pg_url, tmp_path, monkeypatch):
    generate(pg_url, scale=SCALE)
    replay(pg_url, statements=100, scale=SCALE)
    text = plan_yaml("t_nogo", "postgres").replace(
        "health_gate: {on_missing: ignore}", "health_gate: {long_transactions_max: 0, long_transaction_s: 1}"
    )
    with psycopg.connect(pg_url, autocommit=True) as blocker:
        blocker.execute("BEGIN")
        blocker.execute("SELECT count(*) FROM regions")  # a transaction left open: a real breach
        time.sleep(1.5)
        before = dbopt_indexes(pg_url)
        run, record = run_plan(text, pg_url, tmp_path, monkeypatch)
        blocker.execute("ROLLBACK")
    st = states(run)
    gate = record["tasks"]["health_check"]
    assert gate["decision"] == "NO-GO" and "long_transactions" in gate["reason"]
    assert st["report"] == "success" and st["db.extract"] == "skipped" and st["db.create_index"] == "skipped"
    assert dbopt_indexes(pg_url) == before == {}
    assert str(run.state) == "success"


def test_no_gain_index_is_reverted(sqlite_demo, tmp_path, monkeypatch):
    """An index the plan forces on an unselective column is built, measured, judged, and dropped."""
    text = """
id: t_nogain
targets: [{name: db, conn_id: t_nogain_db, dialect: sqlite}]
health_gate: {on_missing: ignore}
indexes:
  auto_advice: false
  explicit: [{table: worklogs, columns: [status]}]
benchmark:
  iterations: 20
  warmup: 2
  queries:
    - name: approved
      # LIKE is case-insensitive in SQLite, so the BINARY index on status cannot serve it: the plan
      # stays a full scan and the measured verdict has no cause to move
      sql: "SELECT count(*), sum(time_spent_seconds) FROM worklogs WHERE status LIKE 'approved'"
"""
    run, record = run_plan(text, sqlite_demo, tmp_path, monkeypatch)
    assert str(run.state) == "success", states(run)
    db = record["targets"]["db"]
    (decision,) = db["judge"]["indexes"]
    assert decision["keep"] is False and db["judge"]["decision"] == "revert", decision
    (evidence,) = db["judge"]["comparison"]["queries"]  # measured before and after, with the statistics
    assert evidence["name"] == "approved" and 0 <= evidence["result"]["p_value"] <= 1
    assert evidence["result"]["ci_low"] <= evidence["result"]["median_ratio"] <= evidence["result"]["ci_high"]
    assert "no benchmark query uses it" in decision["reason"]
    assert [r["status"] for r in db["revert_indexes"]["indexes"]] == ["dropped"]
    assert decision["index"] not in dbopt_indexes(sqlite_demo)


def test_dry_run_changes_nothing(sqlite_demo, tmp_path, monkeypatch):
    run, record = run_plan(plan_yaml("t_dry", "sqlite"), sqlite_demo, tmp_path, monkeypatch, {"dry_run": True})
    assert str(run.state) == "success", states(run)
    db = record["targets"]["db"]
    assert db["create_index"] and {c["status"] for c in db["create_index"]} == {"dry_run"}
    assert dbopt_indexes(sqlite_demo) == {}


def _airflow_env(plans: Path, conn: tuple[str, str], reports: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({conn[0]: conn[1], "DBOPT_PLANS_DIR": str(plans), "DBOPT_REPORTS_DIR": str(reports),
                "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"})  # fmt: skip
    return env


def test_killed_mid_build_then_rerun_no_duplicate_no_loss(pg_url, tmp_path):
    """`airflow dags test` is killed while CREATE INDEX CONCURRENTLY waits; the server drops the
    orphaned build, leaving an INVALID index. The next run cleans it up and builds exactly one."""
    generate(pg_url, scale=SCALE)
    replay(pg_url, statements=200, scale=SCALE)
    plans = tmp_path / "plans"
    plans.mkdir()
    text = plan_yaml("t_kill", "postgres").replace("lock_timeout_s: 2, retries: 1", "lock_timeout_s: 60, retries: 1")
    (plans / "t_kill.yaml").write_text(text)
    env = _airflow_env(plans, connection_env("t_kill_db", pg_url), tmp_path / "reports")
    airflow = str(Path(sys.executable).with_name("airflow"))
    with psycopg.connect(pg_url, autocommit=True) as blocker, psycopg.connect(pg_url, autocommit=True) as watch:
        blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT count(*) FROM regions")  # an old snapshot: CIC waits for it
        proc = subprocess.Popen([airflow, "dags", "test", "dbopt_t_kill"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            deadline = time.time() + 240
            while time.time() < deadline and proc.poll() is None:
                building = watch.execute(
                    "SELECT pid FROM pg_stat_progress_create_index WHERE datname = current_database()"
                ).fetchall()
                if building:
                    break
                time.sleep(0.2)
            assert building, "the run never reached CREATE INDEX CONCURRENTLY"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # a worker crash closes its connection; the server ends the orphaned backend
        for (pid,) in building:
            watch.execute("SELECT pg_terminate_backend(%s)", [pid])
        blocker.execute("ROLLBACK")
    time.sleep(0.5)
    left = dbopt_indexes(pg_url)
    assert left and not all(left.values()), f"expected an INVALID leftover, found {left}"

    result = subprocess.run([airflow, "dags", "test", "dbopt_t_kill"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    after = dbopt_indexes(pg_url)
    assert all(after.values()), f"INVALID index left: {after}"
    assert set(left) <= set(after) | set(_reverted(tmp_path / "reports")), "the crashed run's index was lost"
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "reports").glob("t_kill/*/run.json")]
    cleaned = [c for c in record["targets"]["db"]["create_index"] if c["invalid_cleaned"]]
    assert cleaned, record["targets"]["db"]["create_index"]
    with psycopg.connect(pg_url) as conn:  # no duplicate: one index per column list on each table
        defs = conn.execute(
            "SELECT tablename, regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes "
            "WHERE schemaname = 'public' AND indexname LIKE 'dbopt_%'"
        ).fetchall()
    assert len(defs) == len(set(defs))


def _reverted(reports: Path) -> list[str]:
    names: list[str] = []
    for p in reports.glob("*/*/run.json"):
        names += json.loads(p.read_text())["targets"]["db"].get("judge", {}).get("revert", [])
    return names


def test_allowed_drops_remove_only_redundant_indexes(sqlite_demo, tmp_path, monkeypatch):
    """With indexes.allow_drops, a left-prefix duplicate is dropped after keep/revert; its wider twin stays."""
    with open_target(sqlite_demo) as target:
        target.execute('CREATE INDEX "ix_company" ON worklogs (company_id)')
        target.execute('CREATE INDEX "ix_company_author" ON worklogs (company_id, author_email)')
    text = plan_yaml("t_drops", "sqlite").replace("retries: 1}", "retries: 1, allow_drops: true}")
    run, record = run_plan(text, sqlite_demo, tmp_path, monkeypatch)
    assert str(run.state) == "success", states(run)
    dropped = record["targets"]["db"]["drop_unused"]["indexes"]
    assert [(d["index"], d["status"]) for d in dropped if d["index"].startswith("ix_")] == [("ix_company", "dropped")]
    # the drop is an index change of the run: in the record's facts, the history and the report
    changes = {c["index"]: (c["step"], c["done"], c["decision"]) for c in facts.index_changes(record)}
    assert changes["ix_company"] == ("drop_unused", True, "unused")
    reverts = [i for i, (step, done, _) in changes.items() if step == "revert_indexes" and done]
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as history:
        history.record_run(record)
        (run_row,) = history.runs(datetime(2000, 1, 1, tzinfo=UTC))
    # a drop of an unused index is not a revert of a change this run made
    assert (run_row["indexes_dropped_unused"], run_row["indexes_reverted"]) == (1, len(reverts)), run_row
    report = (next((tmp_path / "reports" / "t_drops").glob("*/report.md"))).read_text()
    assert "| drop | ix_company | dropped | — | unused |" in report
    with open_target(sqlite_demo) as target:
        names = {ix.name for ix in target.indexes(["worklogs"])}
    assert "ix_company_author" in names and "ix_company" not in names
