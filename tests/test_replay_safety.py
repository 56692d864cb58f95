"""dbopt's replays never change anything (issue 11), tried the way the issue's attacks were.

An application on PostgreSQL, MariaDB and SQLite (orders, an audit table its trigger and its function
write, a sequence) runs statements that write while looking like reads. They reach dbopt the way
production hands them over — pg_stat_statements + pg_qualstats examples, performance_schema history,
the SQLite query log — and as plan benchmark SQL and ``dbopt bench --queries`` files. Every table's
rows, every sequence and the file system are the same before and after, in dry and normal runs; each
refusal is reported with its reason. The last tests bypass the parse screen and show the engines
themselves refuse the writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from dbopt import cli, pipeline
from dbopt.plan import Plan, PlanError, parse_plan
from dbopt.replay_safety import refusal, split_queries
from dbopt.report.run import run_view
from dbopt.targets import TargetError, open_target
from dbopt.targets.querylog import QueryLog, timed_execute
from tests.db_users import mysql_login, pg_login, run_as_admin

# serial: runs alone after the parallel tests (Makefile); it resets server-wide statement statistics
# (performance_schema digests, pg_qualstats) that other tests read their workloads from
pytestmark = pytest.mark.serial

ROOT = Path(__file__).resolve().parents[1]
ROWS = 20_000
LEGIT = "SELECT id, total FROM orders WHERE customer_id = 42"


@dataclass
class App:
    """One application database: how to reach it, what it runs, and how to read its whole state."""

    dialect: str
    url: str
    state: Callable[[], dict[str, Any]]
    # statement the application runs → a word the refusal reason must contain
    workload_attacks: dict[str, str]
    # plan benchmark SQL / dbopt bench entries → a word the refusal reason must contain
    sql_attacks: dict[str, str]
    # statements that write, to send to Target.timed directly (the parse screen bypassed)
    writes: list[str]
    outfile: Path | None = None
    keep: list[Any] = field(default_factory=list)  # connections that must stay open (victim session)


def _digest(rows: list[tuple]) -> str:
    return hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()


def _rows_state(run: Callable[[str], list[tuple]], tables: list[str]) -> dict[str, Any]:
    return {t: (len(rows), _digest(rows)) for t in tables for rows in [run(f"SELECT * FROM {t}")]}


# --- PostgreSQL --------------------------------------------------------------------------------
PG_SCHEMA = """
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, total numeric(10,2));
CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text NOT NULL);
CREATE SEQUENCE invoice_no START 1000;
CREATE FUNCTION touch_order(oid bigint) RETURNS bigint LANGUAGE plpgsql AS $$
  BEGIN INSERT INTO audit(what) VALUES ('touched ' || oid); RETURN oid; END $$;
CREATE FUNCTION audit_status() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN INSERT INTO audit(what) VALUES ('order ' || NEW.id || ' ' || NEW.status); RETURN NEW; END $$;
CREATE TRIGGER orders_audit AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION audit_status();
-- declared IMMUTABLE, yet advances a sequence: the planner folds it while it plans (EXPLAIN included)
CREATE FUNCTION next_customer(x int) RETURNS int IMMUTABLE LANGUAGE sql
  AS $$ SELECT (nextval('invoice_no') % 1 + x)::int $$;
INSERT INTO orders (customer_id, status, total) SELECT i % 2000, 'open', i % 500 FROM generate_series(1, 20000) i;
ANALYZE;
"""
PG_ATTACKS = {
    "WITH d AS (UPDATE orders SET status = 'seen' WHERE customer_id = 5 RETURNING *) SELECT count(*) FROM d": "UPDATE",
    "SELECT touch_order(id) FROM orders WHERE customer_id = 7": "touch_order",
    "SELECT nextval('invoice_no'), id FROM orders WHERE customer_id = 8": "nextval",
    "SELECT id FROM orders WHERE customer_id = 9 FOR UPDATE": "row locks",
    # one string, as the application sent it: pg_qualstats keeps it whole as the example
    "SET application_name = 'shop'; SELECT id FROM orders WHERE customer_id = 10; "
    "INSERT INTO audit(what) VALUES ('multi')": "several statements",
    "SELECT set_config('work_mem', '64kB', false), id FROM orders WHERE customer_id = 12": "set_config",
    "SELECT id, total FROM orders WHERE customer_id = next_customer(13)": "next_customer",
}
PG_SQL_ATTACKS = PG_ATTACKS | {
    "SELECT * INTO orders_copy FROM orders WHERE customer_id = 11": "INTO",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'victim'": "pg_terminate_backend",
    "SELECT pg_advisory_lock(42)": "advisory lock",
    "SELECT 1; DROP TABLE audit": "several statements",
}


def _pg_app(url: str) -> App:
    app = psycopg.connect(url, autocommit=True)
    app.execute(PG_SCHEMA)
    app.execute("SELECT pg_stat_statements_reset()")
    for sql in [*PG_ATTACKS, LEGIT]:
        for _ in range(3):
            app.execute(sql)  # no parameters: psycopg's simple protocol, several statements allowed
    app.close()
    victim = psycopg.connect(url, autocommit=True, application_name="victim")

    def state() -> dict[str, Any]:
        with psycopg.connect(url, autocommit=True) as c:
            run = lambda q: c.execute(q).fetchall()  # noqa: E731
            tables = [r[0] for r in run("SELECT format('%I', tablename) FROM pg_tables WHERE schemaname = 'public'")]
            seqs = run("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'")
            victim.execute("SELECT 1")  # still connected: nobody terminated it
            return {"tables": sorted(tables), "rows": _rows_state(run, tables), "sequences": sorted(seqs)}

    writes = [
        "SELECT touch_order(id) FROM orders WHERE customer_id = 7",
        "WITH d AS (UPDATE orders SET status = 'x' WHERE customer_id = 5 RETURNING *) SELECT count(*) FROM d",
        "SELECT nextval('invoice_no')",
        "SELECT * INTO orders_copy FROM orders WHERE customer_id = 11",
        "SELECT 1; INSERT INTO audit(what) VALUES ('multi')",
        "SELECT id FROM orders WHERE customer_id = 9 FOR UPDATE",
    ]
    return App("postgres", url, state, PG_ATTACKS, PG_SQL_ATTACKS, writes, keep=[victim])


# --- MariaDB -----------------------------------------------------------------------------------
MY_SCHEMA = [
    "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, status VARCHAR(20) NOT NULL,"
    " total DECIMAL(10,2)) ENGINE=InnoDB",
    "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100) NOT NULL) ENGINE=InnoDB",
    "CREATE SEQUENCE invoice_no START WITH 1000",
    "CREATE FUNCTION rt_fn(x INT) RETURNS INT MODIFIES SQL DATA"
    " BEGIN INSERT INTO audit(what) VALUES (CONCAT('rt ', x)); RETURN x; END",
    # declared DETERMINISTIC, yet writes: the optimizer calls it with a constant argument (EXPLAIN included)
    "CREATE FUNCTION rt_det(x INT) RETURNS INT DETERMINISTIC MODIFIES SQL DATA"
    " BEGIN INSERT INTO audit(what) VALUES (CONCAT('det ', x)); RETURN x; END",
    "INSERT INTO orders (customer_id, status, total) SELECT seq % 2000, 'open', seq % 500 FROM seq_1_to_20000",
    "ANALYZE TABLE orders",
]
MY_ATTACKS = {
    "SELECT rt_fn(id) FROM orders WHERE customer_id = 7": "rt_fn",
    "SELECT NEXTVAL(invoice_no), id FROM orders WHERE customer_id = 8": "nextval",
    "SELECT id FROM orders WHERE customer_id = 9 FOR UPDATE": "row locks",
    "SELECT id FROM orders WHERE customer_id = 10 LOCK IN SHARE MODE": "row locks",
    "SELECT GET_LOCK('shop', 0), id FROM orders WHERE customer_id = 11": "named lock",
    "SELECT id, total FROM orders WHERE customer_id = rt_det(13)": "rt_det",
}


def _my_app(url: str) -> App:
    database = url.rsplit("/", 1)[1]
    connect = lambda: pymysql.connect(host="127.0.0.1", user="root", database=database, autocommit=True)  # noqa: E731
    with closing(connect()) as app, app.cursor() as cur:
        for sql in MY_SCHEMA:
            cur.execute(sql)
        for sql in [*MY_ATTACKS, LEGIT]:
            for _ in range(3):
                cur.execute(sql)
                cur.fetchall()
        cur.execute("SELECT RELEASE_ALL_LOCKS()")
    outfile = Path(f"/tmp/dbopt_outfile_{uuid.uuid4().hex[:8]}.txt")

    def state() -> dict[str, Any]:
        with closing(connect()) as c, c.cursor() as cur:

            def run(q: str) -> list[tuple]:
                cur.execute(q)
                return list(cur.fetchall())

            tables = [r[0] for r in run("SHOW FULL TABLES")]  # base tables and sequences
            return {"tables": sorted(tables), "rows": _rows_state(run, tables), "outfile": outfile.exists()}

    sql_attacks = MY_ATTACKS | {
        f"SELECT id FROM orders WHERE customer_id = 12 INTO OUTFILE '{outfile}'": "OUTFILE",
        f"SELECT id INTO DUMPFILE '{outfile}' FROM orders WHERE id = 1": "DUMPFILE",
        "SELECT SLEEP(1)": "sleeps",
        "SELECT 1; DROP TABLE audit": "several statements",
    }
    writes = [
        "SELECT rt_fn(id) FROM orders WHERE customer_id = 7",
        "SELECT NEXTVAL(invoice_no)",
        "SELECT 1; DROP TABLE audit",
        "SELECT 1; INSERT INTO audit(what) VALUES ('multi')",
    ]
    return App("mysql", url, state, MY_ATTACKS, sql_attacks, writes, outfile=outfile)


# --- SQLite ------------------------------------------------------------------------------------
SQLITE_SCHEMA = """
CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INT NOT NULL, status TEXT NOT NULL, total REAL);
CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT NOT NULL);
CREATE TRIGGER orders_audit AFTER UPDATE ON orders BEGIN INSERT INTO audit(what) VALUES ('order ' || NEW.id); END;
INSERT INTO orders (customer_id, status, total)
  WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20000)
  SELECT i % 2000, 'open', i % 500 FROM s;
UPDATE orders SET status = 'paid' WHERE id <= 3;
"""
SQLITE_ATTACKS = {
    "SELECT id FROM orders WHERE customer_id = 10; DELETE FROM audit": "several statements",
    "SELECT load_extension('/tmp/evil.so')": "load_extension",
}


def _sqlite_app(url: str) -> App:
    db = Path(url.removeprefix("sqlite:///"))
    log = QueryLog(f"{db}.queries.jsonl")
    with closing(sqlite3.connect(db)) as app:
        app.executescript(SQLITE_SCHEMA)
        for _ in range(3):
            timed_execute(app, log, LEGIT)
            # sent through executescript(): the application's log holds the whole string
            log.record("SELECT id FROM orders WHERE customer_id = 10; DELETE FROM audit", 1.0, 10)
            log.record("SELECT load_extension('/tmp/evil.so')", 1.0, 1)

    def state() -> dict[str, Any]:
        with closing(sqlite3.connect(db)) as c:
            run = lambda q: c.execute(q).fetchall()  # noqa: E731
            tables = [r[0] for r in run("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {"tables": sorted(tables), "rows": _rows_state(run, tables)}  # sqlite_sequence included

    sql_attacks = SQLITE_ATTACKS | {"SELECT 1; DROP TABLE audit": "several statements"}
    writes = ["DELETE FROM audit", "UPDATE orders SET status = 'x' WHERE id = 1", "SELECT 1; DROP TABLE audit"]
    return App("sqlite", url, state, SQLITE_ATTACKS, sql_attacks, writes)


APPS = {"postgres": (_pg_app, "pg_url"), "mysql": (_my_app, "mysql_url"), "sqlite": (_sqlite_app, "sqlite_url")}


@pytest.fixture(params=list(APPS))
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    make, fixture = APPS[request.param]
    a = make(request.getfixturevalue(fixture))
    yield a
    for conn in a.keep:
        conn.close()


def _plan(dialect: str, queries: dict[str, str] | None = None) -> Plan:
    """A plan as the CLI and the DAG would use it; ``queries`` bypass parse_plan's check on purpose."""
    bench: dict[str, Any] = {"from_workload": 20, "iterations": 5, "warmup": 1}
    if queries:
        bench["queries"] = [{"name": f"q{i}", "sql": sql} for i, sql in enumerate([LEGIT, *queries])]
    return Plan.model_validate(
        {"id": "replay", "targets": [{"conn_id": "app", "dialect": dialect}], "workload": {"min_calls": 1},
         "indexes": {"min_table_rows": 1000}, "benchmark": bench}
    )  # fmt: skip


def _apply(plan: Plan, target: Any, dry_run: bool, reports: Path, bench: Any = None) -> dict[str, Any]:
    """``dbopt apply``'s own function: the run record of the declared steps on one target."""
    return cli.apply(plan, plan.targets[0], target, dry_run=dry_run, reports_dir=reports, bench=bench)


def _refused(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The queries an apply run refused to replay, as its benchmark reported them."""
    (target,) = record["targets"].values()
    return target["bench_before"]["refused"]


def _assert_refused(refused: list[dict[str, Any]], attacks: dict[str, str]) -> None:
    reasons = {r["sql"][0]: r["reason"] for r in refused}
    for sql, word in attacks.items():
        assert sql in reasons, f"not reported as refused: {sql}\nrefused: {reasons}"
        assert word.lower() in reasons[sql].lower(), (sql, reasons[sql])


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry_run", "apply"])
def test_workload_replay_changes_nothing(app: App, dry_run: bool, tmp_path: Path) -> None:
    """`dbopt apply [--dry-run]` replays the workload's examples: the attacks are refused and reported."""
    before = app.state()
    if dry_run:  # the console script, as a user runs it
        cmd = [ROOT / ".venv/bin/dbopt", "apply", app.url, "--dry-run", "--json", "--min-table-rows", "1000",
               "--iterations", "5", "--warmup", "1"]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
    else:
        with open_target(app.url) as target:
            summary = _apply(_plan(app.dialect), target, False, tmp_path)
    assert app.state() == before
    _assert_refused(_refused(summary), app.workload_attacks)
    assert LEGIT not in {r["sql"][0] for r in _refused(summary)}
    assert "not replayed" in cli._apply_text(summary)


def test_run_report_lists_each_refusal() -> None:
    """The advise task's queries carry the refusals into the run record; the report notes each one."""
    queries = [{"name": "q1", "sql": ["SELECT 1; DROP TABLE audit"], "refused": "several statements (SELECT, DROP)"}]
    view = run_view({"plan": "week", "targets": {"shop": {"advise": {"queries": queries}}}})
    assert "shop: not replayed (unsafe), several statements (SELECT, DROP): SELECT 1; DROP TABLE audit" in view["notes"]


def test_workload_examples_through_the_dag_functions(app: App) -> None:
    """bench_queries → benchmark, as the DAG's advise and bench tasks call them: refused, reported, not run."""
    plan = _plan(app.dialect)
    before = app.state()
    with open_target(app.url) as target:
        workload = pipeline.extract_workload(plan, plan.targets[0], target)
        queries = pipeline.bench_queries(plan, [s.to_dict() for s in workload.statements], target.dialect)
        result = pipeline.benchmark(plan, target, queries)
    assert app.state() == before
    _assert_refused([q | {"reason": q["refused"]} for q in queries if q.get("refused")], app.workload_attacks)
    _assert_refused(result["refused"], app.workload_attacks)
    assert [q["name"] for q in result["queries"]], "the application's plain SELECT is still measured"


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry_run", "apply"])
def test_plan_benchmark_sql_changes_nothing(app: App, dry_run: bool, tmp_path: Path) -> None:
    """Plan benchmark SQL that slipped past validation is refused at run time, the plain query measured."""
    before = app.state()
    with open_target(app.url) as target:
        summary = _apply(_plan(app.dialect, app.sql_attacks), target, dry_run, tmp_path)
    assert app.state() == before
    _assert_refused(_refused(summary), app.sql_attacks)
    assert LEGIT not in {r["sql"][0] for r in _refused(summary)}


def test_validate_rejects_plan_benchmark_sql(app: App, tmp_path: Path) -> None:
    """`dbopt validate` names the file, the line, the field and the fix for each unsafe query."""
    plan = {
        "id": "week",
        "targets": [{"conn_id": "app", "dialect": app.dialect}],
        "benchmark": {"queries": [{"name": f"q{i}", "sql": sql} for i, sql in enumerate(app.sql_attacks)]},
    }
    path = tmp_path / "week.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False, width=1000))
    with pytest.raises(PlanError) as err:
        parse_plan(path.read_text(), path)
    assert len(err.value.problems) == len(app.sql_attacks)
    lines = path.read_text().splitlines()
    for problem, (sql, word) in zip(err.value.problems, app.sql_attacks.items(), strict=True):
        line = int(problem.split(":")[0].removeprefix("line "))
        assert sql.split()[1] in lines[line - 1], (problem, lines[line - 1])
        assert "benchmark.queries." in problem and word.lower() in problem.lower()
        assert "must be one read-only SELECT" in problem
    run = subprocess.run([ROOT / ".venv/bin/dbopt", "validate", str(path)], capture_output=True, text=True)
    assert run.returncode == 1 and str(path) in run.stderr and "not replayable" in run.stderr


def test_dbopt_bench_refuses_and_exits_nonzero(app: App, tmp_path: Path) -> None:
    """`dbopt bench --queries F.sql`: each unsafe query named with its reason, nothing run, exit 1."""
    before = app.state()
    queries = tmp_path / "queries.sql"
    queries.write_text(";\n".join([LEGIT, *app.sql_attacks]) + ";\n")
    cmd = [ROOT / ".venv/bin/dbopt", "bench", app.url, "--queries", str(queries), "--iterations", "5", "--warmup", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert app.state() == before
    for sql in app.sql_attacks:
        for part in sql.split(";"):  # a ';' inside one line cuts the file into two entries, both screened
            if refusal(part, app.dialect):
                assert f"refused: {refusal(part, app.dialect)}" in run.stderr
    assert "nothing measured" in run.stderr
    one = tmp_path / "one.sql"
    one.write_text("SELECT 1; DROP TABLE audit")
    run = subprocess.run([*cmd[:4], str(one)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "DROP" in run.stderr and app.state() == before
    ok = tmp_path / "ok.sql"
    ok.write_text(f"{LEGIT};\nSELECT 'a;b' AS semicolon_in_a_string;\n")
    run = subprocess.run([*cmd[:4], str(ok), *cmd[5:]], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "q1" in run.stdout and "q2" in run.stdout and "q3" not in run.stdout


def test_engine_refuses_writes_when_the_screen_is_bypassed(app: App) -> None:
    """Target.timed directly, no parse screen: the read-only transaction / connection stops every write."""
    before = app.state()
    with open_target(app.url) as target:
        for sql in app.writes:
            with pytest.raises(TargetError):
                target.timed(sql)
        assert target.timed(LEGIT) > 0  # the connection is usable after each refusal
    assert app.state() == before


@pytest.mark.parametrize(
    ("engine", "sql"),
    [
        ("postgres", "SELECT id FROM orders WHERE customer_id = next_customer(13)"),  # IMMUTABLE: folded
        ("mysql", "SELECT id FROM orders WHERE customer_id = rt_det(13)"),  # DETERMINISTIC: called
    ],
)
def test_explain_cannot_write_through_a_function_the_planner_calls(
    engine: str, sql: str, request: pytest.FixtureRequest
) -> None:
    """The advisor and the verification EXPLAIN application text: planning runs in a rolled-back READ ONLY
    transaction too, so a function the planner evaluates cannot advance a sequence or insert."""
    make, fixture = APPS[engine]
    app = make(request.getfixturevalue(fixture))
    try:
        before = app.state()
        with open_target(app.url) as target, pytest.raises(TargetError, match=r"(?i)read.only transaction"):
            target.explain(sql)
        assert app.state() == before
    finally:
        for conn in app.keep:
            conn.close()


def test_replay_timeout_cuts_a_runaway_query(pg_url: str, sqlite_url: str) -> None:
    with open_target(pg_url) as target:
        start = time.monotonic()
        with pytest.raises(TargetError, match="statement timeout"):
            target.timed("SELECT pg_sleep(5)", timeout_s=0.2)
        assert time.monotonic() - start < 3
    sqlite3.connect(sqlite_url.removeprefix("sqlite:///")).close()
    with open_target(sqlite_url) as target:
        start = time.monotonic()
        with pytest.raises(TargetError, match="interrupt"):
            target.timed(
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s) SELECT max(i) FROM s", timeout_s=0.2
            )
        assert time.monotonic() - start < 3


def test_select_only_user_cannot_write_a_file_even_unscreened(mysql_url: str) -> None:
    """The README's benchmark user (SELECT only): INTO OUTFILE fails on the server too (no FILE privilege)."""
    outfile = Path(f"/tmp/dbopt_outfile_{uuid.uuid4().hex[:8]}.txt")
    run_as_admin(mysql_url, "CREATE TABLE t (id INT PRIMARY KEY)")
    with mysql_login(mysql_url) as login, open_target(login.url) as bench:
        with pytest.raises(TargetError, match=r"FILE|Access denied"):
            bench.timed(f"SELECT id FROM t INTO OUTFILE '{outfile}'")
        assert bench.timed("SELECT id FROM t") > 0
    assert not outfile.exists()


def test_apply_replays_as_the_benchmark_user(pg_url: str, tmp_path: Path) -> None:
    """`dbopt apply --bench-url` / bench_conn_id: replays run as a SELECT-only role, which cannot signal."""
    app = _pg_app(pg_url)
    try:
        with pg_login(pg_url) as login:
            run_as_admin(pg_url, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{login.name}"')
            before = app.state()
            with open_target(pg_url) as target, open_target(login.url) as bench:
                summary = _apply(_plan("postgres"), target, True, tmp_path, bench)
                measured = pipeline.benchmark(_plan("postgres"), bench, [{"name": "legit", "sql": [LEGIT]}])
                with pytest.raises(TargetError, match=r"superuser|permission denied"):
                    bench.timed(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'victim'"
                    )
            assert app.state() == before
            _assert_refused(_refused(summary), app.workload_attacks)
            assert measured["queries"][0]["summary"]["n"] == 5
    finally:
        for conn in app.keep:
            conn.close()


# --- the screen on its own (no database) -------------------------------------------------------
@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("postgres", "SELECT o.id FROM orders o JOIN audit a ON a.what = o.status WHERE o.customer_id = 3 ORDER BY 1"),
        ("postgres", "WITH r AS (SELECT customer_id, count(*) n FROM orders GROUP BY 1) SELECT * FROM r WHERE n > 2"),
        ("postgres", "SELECT date_trunc('day', now()) - interval '7 days', coalesce(status, 'x') FROM orders"),
        ("mysql", "SELECT /*+ MAX_EXECUTION_TIME(1000) */ id FROM orders WHERE status LIKE 'op%' LIMIT 5"),
        ("mysql", "SELECT DATE_FORMAT(NOW(), '%Y'), IFNULL(total, 0) FROM orders UNION SELECT 1, 2"),
        ("sqlite", "SELECT datetime('now'), strftime('%Y', 'now'), ifnull(total, 0) FROM orders WHERE id = ?"),
    ],
)
def test_plain_reads_pass_the_screen(dialect: str, sql: str) -> None:
    assert refusal(sql, dialect) is None


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("EXPLAIN ANALYZE DELETE FROM orders", "EXPLAIN"),
        ("COPY orders TO '/tmp/x'", "COPY"),
        ("CALL p()", "CALL"),
        ("DO $$ BEGIN DELETE FROM audit; END $$", "DO"),
        ("SET work_mem = '1GB'", "SET"),
        ("SELECT lo_import('/etc/passwd')", "large object"),
        ("SELECT * FROM dblink('host=x', 'DELETE FROM audit') AS t(n int)", "another connection"),
        ("SELECT pg_cancel_backend(1)", "cancels"),
        ("SELECT pg_sleep(1)", "sleeps"),
        ("SELECT setval('invoice_no', 1)", "sequence"),
        ("SELECT * FROM orders FOR SHARE", "row locks"),
        ("SELECT audit_total(id) FROM orders", "safe_functions"),
    ],
)
def test_postgres_refusals(sql: str, word: str) -> None:
    assert word.lower() in (refusal(sql, "postgres") or "").lower()


def test_safe_functions_allow_user_functions_and_never_unsafe_ones(tmp_path: Path) -> None:
    assert refusal("SELECT audit_total(id) FROM orders", "postgres", ["audit_total"]) is None
    assert "nextval" in (refusal("SELECT nextval('s')", "postgres", ["nextval"]) or "")
    base = "id: week\ntargets: [{conn_id: app, dialect: postgres}]\nbenchmark:\n  safe_functions: [%s]\n"
    for bad, fix in [("pg_sleep", "never safe to replay"), ("public.f(x)", "bare function name")]:
        with pytest.raises(PlanError) as err:
            parse_plan(base % bad, tmp_path / "week.yaml")
        assert len(err.value.problems) == 1
        assert err.value.problems[0].startswith("line 4: benchmark.safe_functions.0: ") and fix in str(err.value)


def test_sql_files_split_at_top_level_semicolons_only() -> None:
    text = "SELECT 'a;b' FROM t; -- note; not a cut\nSELECT $$;$$;\n/* ; */ SELECT 1; DROP TABLE audit"
    assert split_queries(text, "postgres") == [
        "SELECT 'a;b' FROM t",
        "-- note; not a cut\nSELECT $$;$$",
        "/* ; */ SELECT 1",
        "DROP TABLE audit",
    ]
    with pytest.raises(ValueError, match="cannot read"):
        split_queries("SELECT 'unterminated", "postgres")
