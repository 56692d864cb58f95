"""The ``dbopt`` console script, as a user runs it: every subcommand on the three engines.

``apply`` walks the same step declaration as the DAG (``dbopt.steps``): health gate, backup, builds,
verdicts, reverts and drops, with the Cloud Run steps skipped and said why.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from dbopt.demo_data import generate, replay
from dbopt.targets import open_target
from tests.dag_runs import dbopt_indexes

# serial: runs alone after the parallel tests (Makefile); it resets server-wide statement statistics
# (performance_schema digests, pg_qualstats) that other tests read their workloads from
pytestmark = pytest.mark.serial

ROOT = Path(__file__).resolve().parents[1]
DBOPT = Path(sys.executable).with_name("dbopt")
SCALE = 0.02
OPTIONS = ["--min-calls", "2", "--min-table-rows", "1000", "--top", "12"]


def dbopt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DBOPT), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def demo_url(request) -> str:
    """The demo database with a replayed workload on each engine."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_demo")
    url = request.getfixturevalue("pg_url" if request.param == "postgres" else "mysql_url")
    generate(url, scale=SCALE)
    with open_target(url) as target:
        target.reset_workload()
    replay(url, statements=200, scale=SCALE)
    return url


def test_every_subcommand_on_each_engine(demo_url, tmp_path):
    advised = dbopt("advise", demo_url, *OPTIONS, "--json", cwd=tmp_path)
    assert advised.returncode == 0, advised.stderr
    assert json.loads(advised.stdout)["create"], advised.stdout
    table = dbopt("advise", demo_url, *OPTIONS, cwd=tmp_path)
    # the DDL in the engine's online form: CREATE INDEX (PostgreSQL, SQLite), ALTER TABLE … ADD INDEX (MySQL)
    assert table.returncode == 0 and "workload:" in table.stdout
    assert "CREATE INDEX" in table.stdout.upper() or "ADD INDEX" in table.stdout.upper(), table.stdout

    apply_options = [*OPTIONS, "--iterations", "8", "--warmup", "1", "--json"]
    dry = dbopt("apply", demo_url, *apply_options, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    record = json.loads(dry.stdout)
    assert record["tasks"]["health_check"]["decision"] == "GO"
    target = record["targets"]["primary"]
    assert target["create_index"] and {c["status"] for c in target["create_index"]} == {"dry_run"}
    assert target["skipped"]["backup"].startswith("dry run")
    assert dbopt_indexes(demo_url) == {}

    applied = dbopt("apply", demo_url, *apply_options, "--reports-dir", "reports", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    target = json.loads(applied.stdout)["targets"]["primary"]
    assert target["backup"]["verified"] is True and Path(tmp_path, target["backup"]["path"]).exists()
    assert {c["status"] for c in target["create_index"]} <= {"created", "exists"}
    kept = {d["index"] for d in target["judge"]["indexes"] if d["keep"]}
    assert kept == set(dbopt_indexes(demo_url)), target["judge"]

    # after apply: the benchmark's own statements are not part of the application's workload
    big, small = ("worklogs", "companies") if demo_url.startswith("sqlite") else ("sessions", "regions")
    (tmp_path / "q.sql").write_text(f"SELECT count(*) FROM {big}; SELECT count(*) FROM {small}")
    bench = dbopt("bench", demo_url, "--queries", "q.sql", "--iterations", "5", "--warmup", "1", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr  # was KeyError: 'mean'
    lines = bench.stdout.splitlines()
    assert lines[0].split() == ["query", "mean", "median", "p95", "p99", "n"] and lines[2].startswith("q1")
    bench_json = dbopt("bench", demo_url, "--queries", "q.sql", "--iterations", "5", "--json", cwd=tmp_path)
    assert [q["name"] for q in json.loads(bench_json.stdout)["queries"]] == ["q1", "q2"]

    valid = dbopt("validate", *map(str, sorted((ROOT / "include" / "plans").glob("*.yaml"))), cwd=tmp_path)
    assert valid.returncode == 0 and "ok (dbopt_week17)" in valid.stdout
    (tmp_path / "bad.yaml").write_text("id: bad\ntargets: [{name: work logs, conn_id: x, dialect: sqlite}]\n")
    invalid = dbopt("validate", "bad.yaml", cwd=tmp_path)
    assert invalid.returncode == 1 and "targets.0.name: 'work logs' cannot be a target name" in invalid.stderr


def test_apply_runs_the_gate_backup_and_drops_like_the_dag(sqlite_demo, tmp_path):
    """The plan allows drops: apply backs up first, and drops the left-prefix duplicate after the
    verdicts; the canary steps are listed as skipped, with the reason."""
    with open_target(sqlite_demo) as target:
        target.execute('CREATE INDEX "ix_company" ON worklogs (company_id)')
        target.execute('CREATE INDEX "ix_company_author" ON worklogs (company_id, author_email)')
    (tmp_path / "drops.yaml").write_text("""
id: drops
targets: [{name: db, conn_id: unused, dialect: sqlite}]
workload: {min_calls: 2, top_n: 12}
indexes: {min_table_rows: 1000, allow_drops: true}
benchmark: {from_workload: 6, iterations: 8, warmup: 1}
deploy: {enabled: true, project: demo, services: [{name: api, region: us-central1}]}
""")
    done = dbopt("apply", sqlite_demo, "--plan", "drops.yaml", "--reports-dir", "reports", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("health gate: GO")
    assert "drop_unused: drop ix_company: dropped" in out
    assert "canary api/us-central1: skipped deploy: runs in the Airflow DAG only" in out
    assert list((tmp_path / "reports" / "backups" / "drops").iterdir()), "no backup taken"
    with open_target(sqlite_demo) as target:
        names = {ix.name for ix in target.indexes(["worklogs"])}
    assert "ix_company_author" in names and "ix_company" not in names


def test_apply_stops_at_a_no_go_gate_and_says_so_in_its_exit_status(pg_url, tmp_path):
    generate(pg_url, scale=SCALE)
    replay(pg_url, statements=100, scale=SCALE)
    (tmp_path / "gate.yaml").write_text("""
id: gate
targets: [{name: db, conn_id: unused, dialect: postgres}]
health_gate: {long_transactions_max: 0, long_transaction_s: 1}
workload: {min_calls: 2}
indexes: {min_table_rows: 1000}
""")
    with psycopg.connect(pg_url, autocommit=True) as blocker:
        blocker.execute("BEGIN")
        blocker.execute("SELECT count(*) FROM regions")  # a transaction left open: a real breach
        time.sleep(1.5)
        stopped = dbopt("apply", pg_url, "--plan", "gate.yaml", cwd=tmp_path)
        blocker.execute("ROLLBACK")
    assert stopped.returncode == 3, stopped.stderr
    assert stopped.stdout.startswith("health gate: NO-GO") and "long_transactions" in stopped.stdout
    assert dbopt_indexes(pg_url) == {}
