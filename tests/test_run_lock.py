"""One run per database, index ownership and truthful exit codes, on the three engines.

``dbopt apply`` runs as the console script in subprocesses (as a user runs it); the history store
(where run leases live) is the test session's throwaway file, shared with them through the
environment (tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pymysql
import pytest
import yaml
from sqlalchemy.engine import make_url

from dbopt import pipeline
from dbopt.history import leases
from dbopt.history.leases import Holder
from dbopt.plan import Plan
from dbopt.results import Advice, Judgement, Verdict, Workload
from dbopt.runlock import TargetBusy, hold_target
from dbopt.targets import dialect_of, open_target
from dbopt.targets.base import IndexSpec
from tests.test_faults import _fill

DBOPT = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "dbopt")
QUERY = "SELECT id, b FROM items WHERE a = 5"


@pytest.fixture(params=["postgres", "mysql", "sqlite"])
def url(request) -> str:
    return request.getfixturevalue({"postgres": "pg_url", "mysql": "mysql_url", "sqlite": "sqlite_url"}[request.param])


def _plan_file(tmp_path: Path, dialect: str, iterations: int = 30, **extra: object) -> Path:
    """A plan with one explicit index on items(a) and one benchmark query that it serves."""
    plan = {
        "id": "lock",
        "targets": [{"conn_id": "db", "dialect": dialect}],
        "indexes": {"auto_advice": False, "explicit": [{"table": "items", "columns": ["a"]}], "min_table_rows": 0,
                    "lock_timeout_s": 0.5, "retries": 1},
        "benchmark": {"queries": [{"name": "by_a", "sql": QUERY}], "iterations": iterations, "warmup": 1},
        **extra,
    }  # fmt: skip
    path = tmp_path / f"{dialect}-{iterations}" / "lock.yaml"  # a plan file is named after its id
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(plan))
    return path


def _apply(url: str, plan: Path) -> subprocess.Popen:
    return subprocess.Popen([DBOPT, "apply", url, "--plan", str(plan)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _identity(url: str) -> str:
    with open_target(url) as target:
        return target.identity()


def _indexes(url: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    with open_target(url) as target:
        return {ix.name: (ix.columns, ix.valid) for ix in target.indexes(["items"]) if not ix.primary}


def _wait_for_lease(key: str, timeout_s: float = 60) -> Holder:
    deadline = time.monotonic() + timeout_s
    with leases.opened() as engine:
        while (held := leases.current(engine, key)) is None:
            assert time.monotonic() < deadline, "the first run never took the lease"
            time.sleep(0.05)
    return held


# --- one run per database ---------------------------------------------------------------------


def test_two_concurrent_applies_one_proceeds_the_other_names_the_holder(url, tmp_path):
    _fill(url, 20000)
    key = _identity(url)
    first = _apply(url, _plan_file(tmp_path, dialect_of(url), iterations=100))
    holder = _wait_for_lease(key)
    second = subprocess.run([DBOPT, "apply", url, "--plan", str(_plan_file(tmp_path, dialect_of(url)))],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    out, err = first.communicate(timeout=300)

    assert second.returncode != 0 and "is busy" in second.stderr, second.stderr
    assert f"CLI run {holder.run_id}" in second.stderr and f"pid {first.pid}" in second.stderr
    assert socket.gethostname() in second.stderr and "since" in second.stderr
    assert first.returncode == 0, err
    # no index lost: what the first run kept is there, and nothing else was built or dropped
    spec = IndexSpec("items", ("a",))
    kept = f"KEEP   {spec.name}" in out
    assert (spec.name in _indexes(url)) is kept, out
    with leases.opened() as engine:
        assert leases.current(engine, key) is None, "the CLI releases its lease when it ends"


def test_cli_during_a_dag_run_is_refused_with_the_reason(url, tmp_path):
    _fill(url, 2000)
    key = _identity(url)
    dag_run = Holder("dbopt_weekly/manual__2026-11-30T10:00:00+00:00", "dbopt_weekly", "dag", "airflow-worker-1", 4242)
    with leases.opened() as engine:
        assert leases.claim(engine, key, dag_run, ttl_s=3600) is None
        try:
            refused = subprocess.run([DBOPT, "apply", url, "--plan", str(_plan_file(tmp_path, dialect_of(url)))],
                                     capture_output=True, text=True, timeout=120)  # fmt: skip
            assert refused.returncode != 0
            assert f"Airflow run {dag_run.run_id} (plan dbopt_weekly) on host airflow-worker-1" in refused.stderr
            assert _indexes(url) == {}, "the refused run changed nothing"
        finally:
            leases.release(engine, dag_run.run_id)


def test_an_expired_lease_or_a_dead_cli_holder_does_not_block(sqlite_url, tmp_path):
    _fill(sqlite_url, 2000)
    key = _identity(sqlite_url)
    crashed_cli = Holder("cli-crashed", "cli", "cli", socket.gethostname(), _dead_pid())
    long_gone_dag = Holder("dbopt_x/old", "dbopt_x", "dag", "elsewhere", 1)
    with leases.opened() as engine:
        assert leases.claim(engine, key, crashed_cli, ttl_s=3600) is None
        assert leases.claim(engine, key, Holder("other", "p", "cli"), ttl_s=60) is None  # taken over
        leases.release(engine, "other")
        assert leases.claim(engine, key, long_gone_dag, ttl_s=0.01) is None
        time.sleep(0.05)
        assert leases.claim(engine, key, Holder("next", "p", "dag", "h", 1), ttl_s=60) is None  # expired
        live = leases.claim(engine, key, Holder("third", "q", "dag", "h", 1), ttl_s=60)  # another plan's run
        assert live is not None and live.run_id == "next"
        # a later run of the same DAG takes over: Airflow runs one at a time, so "next" died before its report
        assert leases.claim(engine, key, Holder("fourth", "p", "dag", "h", 1), ttl_s=60) is None
        leases.release(engine, "fourth")


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_engine_lock_excludes_a_run_with_another_history_store(url, tmp_path):
    """Across machines the history store may differ: the engine lock still excludes the second run."""
    _fill(url, 2000)
    env = os.environ | {"DBOPT_HISTORY_URL": f"sqlite:///{tmp_path / 'elsewhere.db'}"}
    with open_target(url) as holder:
        assert holder.try_run_lock("run elsewhere-1 (plan far) on far-host pid 7")
        refused = subprocess.run([DBOPT, "apply", url, "--plan", str(_plan_file(tmp_path, dialect_of(url)))],
                                 capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        holder.release_run_lock()
    assert refused.returncode != 0 and "holds dbopt's lock on it" in refused.stderr, refused.stderr
    if dialect_of(url) != "mysql":  # PostgreSQL shows it in application_name, SQLite in the lock file
        assert "elsewhere-1" in refused.stderr
    assert _indexes(url) == {}


def test_dag_tasks_of_one_run_share_the_lease_and_another_run_waits_or_fails(sqlite_url):
    _fill(sqlite_url, 100)
    run_a = Holder("dbopt_a/manual__1", "dbopt_a", "dag")
    run_b = Holder("dbopt_b/manual__1", "dbopt_b", "dag")
    policy = Plan.model_validate({"id": "x", "targets": [{"conn_id": "c", "dialect": "sqlite"}]}).run
    waiting = policy.model_copy(update={"on_busy": "wait", "wait_timeout_s": 3})
    with open_target(sqlite_url) as task1, hold_target(task1, run_a, policy, release_lease=False) as key:
        pass  # task 1 of run A ends; its run keeps the lease
    with open_target(sqlite_url) as task2, hold_target(task2, run_a, policy, release_lease=False):
        pass  # task 2 of run A proceeds
    with open_target(sqlite_url) as other:
        busy = r"Airflow run dbopt_a/manual__1 \(plan dbopt_a\)"
        with pytest.raises(TargetBusy, match=busy), hold_target(other, run_b, policy, release_lease=False):
            pass
        started = time.monotonic()
        with pytest.raises(TargetBusy, match=r"waited \d+s"), hold_target(other, run_b, waiting, release_lease=False):
            pass
        assert time.monotonic() - started >= 3
    with leases.opened() as engine:
        assert leases.release(engine, run_a.run_id) == 1
        assert leases.current(engine, key) is None


# --- ownership --------------------------------------------------------------------------------


def test_foreign_index_under_a_dbopt_name_is_reported_left_alone_and_the_index_built_under_another(url, tmp_path):
    _fill(url, 20000)
    spec = IndexSpec("items", ("a",))
    with open_target(url) as target:  # someone else's index, other columns, under dbopt's name for items(a)
        target.execute(f"CREATE INDEX {target.quote(spec.name)} ON items (b)")
    run = subprocess.run([DBOPT, "apply", url, "--plan", str(_plan_file(tmp_path, dialect_of(url))), "--json"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    (summary,) = yaml.safe_load(run.stdout)["targets"].values()
    (foreign,) = summary["advise"]["foreign"]
    assert (foreign["index"], foreign["columns"], foreign["valid"]) == (spec.name, ["b"], True)
    assert "did not build" in foreign["reason"]
    (built,) = summary["create_index"]
    assert built["index"] != spec.name and built["index"].startswith("dbopt_items_a_")
    assert built["status"] == "created" and run.returncode == 0, run.stderr
    after = _indexes(url)
    assert after[spec.name] == (("b",), True), "the foreign index is untouched"
    kept = [d["index"] for d in summary["judge"]["indexes"] if d["keep"]]
    assert (built["index"] in after) is (built["index"] in kept)


def test_foreign_invalid_index_under_a_dbopt_name_is_not_dropped(pg_url, tmp_path):
    _fill(pg_url, 20000)
    spec = IndexSpec("items", ("a",))
    # a failed unique build leaves an INVALID index
    with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{spec.name}" ON items (a)')
    assert _indexes(pg_url)[spec.name] == (("a",), False)
    with open_target(pg_url) as target:
        plan = Plan.model_validate(yaml.safe_load(_plan_file(tmp_path, "postgres").read_text()))
        advice = pipeline.advise(plan, target, Workload("none"))
        assert [f["index"] for f in advice.foreign] == [spec.name] and not advice.foreign[0]["valid"]
        (planned,) = advice.create
        assert planned.name != spec.name
        # asked to build under the taken name anyway (an explicit plan name): refused, nothing dropped
        refused = pipeline.create_index(plan, target, spec, dry_run=False)
        assert refused.status == "refused" and "did not build" in refused.error
        assert pipeline.run_problems([refused], advice)
    assert _indexes(pg_url)[spec.name] == (("a",), False)


def test_revert_never_drops_an_index_without_the_mark(url):
    _fill(url, 100)
    with open_target(url) as target:
        target.execute("CREATE INDEX theirs ON items (b)")
        plan = Plan.model_validate({"id": "x", "targets": [{"conn_id": "c", "dialect": dialect_of(url)}]})
        judgement = Judgement("revert", (Verdict("items", "theirs", False, "no gain"),), ("theirs",))
        (result,) = pipeline.revert_indexes(plan, target, Advice(), judgement, dry_run=False).indexes
    assert result.status == "refused" and "did not build it" in result.error
    assert "theirs" in _indexes(url)


# --- exit codes -------------------------------------------------------------------------------


def test_apply_exits_non_zero_when_a_build_is_refused(url, tmp_path):
    _fill(url, 2000)
    now = datetime.now(UTC)
    closed = {"days": [("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(now + timedelta(days=2)).weekday()]],
              "start": "01:00", "end": "02:00"}  # fmt: skip
    run = subprocess.run([DBOPT, "apply", url, "--plan",
                          str(_plan_file(tmp_path, dialect_of(url), maintenance_window=closed))],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "refused" in run.stdout and "outside the maintenance window" in run.stderr
    assert _indexes(url) == {}


def test_apply_exits_non_zero_after_exhausted_retries_behind_a_long_transaction_and_leaves_no_invalid_index(
    pg_url, tmp_path
):
    _fill(pg_url, 20000)
    with psycopg.connect(pg_url) as blocker:  # an old snapshot CIC must wait for; it touches no table
        blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT 1")
        run = subprocess.run([DBOPT, "apply", pg_url, "--plan", str(_plan_file(tmp_path, "postgres"))],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        blocker.rollback()
    assert run.returncode == 1, run.stdout + run.stderr
    assert "failed" in run.stdout and "lock timeout" in run.stderr
    assert "an INVALID leftover was dropped in this run" in run.stdout
    assert _indexes(pg_url) == {}, "no INVALID index is left behind"


def test_mariadb_apply_refused_while_a_young_transaction_touched_the_table(mysql_url, tmp_path):
    _fill(mysql_url, 2000)
    u = make_url(mysql_url)
    holder = pymysql.connect(host=u.host, user="root", database=u.database, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM items")  # one second old, not "long"
        run = subprocess.run([DBOPT, "apply", mysql_url, "--plan", str(_plan_file(tmp_path, "mysql"))],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    finally:
        holder.rollback()
        holder.close()
    assert run.returncode == 1, run.stdout + run.stderr
    assert "an open transaction has touched 'items'" in run.stderr
    assert _indexes(mysql_url) == {}


def test_a_finished_build_leaves_no_claim_on_a_later_invalid_index_of_that_name(pg_url, tmp_path):
    _fill(pg_url, 20000)
    spec = IndexSpec("items", ("a",))
    plan = Plan.model_validate(yaml.safe_load(_plan_file(tmp_path, "postgres").read_text()))
    with open_target(pg_url) as target:
        assert pipeline.create_index(plan, target, spec, dry_run=False).status == "created"
        target.execute(f'DROP INDEX "{spec.name}"')
    with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{spec.name}" ON items (a)')  # someone else's, INVALID
    with open_target(pg_url) as target:
        again = pipeline.create_index(plan, target, spec, dry_run=False)
    assert again.status == "refused", again
    assert _indexes(pg_url)[spec.name] == (("a",), False)
