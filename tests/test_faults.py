"""Fault injection against real servers: every fault leaves the databases in a known state and no
data row lost or changed (row counts and checksums compared before and after).

- a server restart during CREATE INDEX CONCURRENTLY (a throwaway PostgreSQL cluster of our own);
- a long transaction holding the table on the shared servers (the build gives up, the leftover goes);
- a disk-budget refusal; SQL inside identifiers; bad plan files (hypothesis).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from sqlalchemy.engine import make_url

from dbopt import pipeline
from dbopt.guardrails import GuardrailError, Limits, check_disk, guard_index_build, only_index_ddl
from dbopt.ownership import record_build
from dbopt.plan import Plan, PlanError, parse_plan
from dbopt.targets import open_target
from dbopt.targets.base import IndexSpec

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROOT = Path(__file__).resolve().parents[1]


# --- checksums: row count and a digest of every row, per engine --------------------------------


def checksum(url: str, table: str) -> tuple[int, str]:
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "postgresql":
        with psycopg.connect(url) as conn:
            ident = sql.Identifier(table)
            query = sql.SQL("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM {} t")
            count, digest = conn.execute(query.format(ident)).fetchone()
        return count, digest
    if backend == "mysql":
        conn = pymysql.connect(host=u.host, port=u.port or 3306, user="root", database=u.database)
        try:
            with conn.cursor() as cur:
                quoted = "`" + table.replace("`", "``") + "`"
                cur.execute(f"SELECT COUNT(*) FROM {quoted}")
                (count,) = cur.fetchone()
                cur.execute(f"CHECKSUM TABLE {quoted}")
                return count, str(cur.fetchone()[1])
        finally:
            conn.close()
    with contextlib.closing(sqlite3.connect(u.database)) as conn:
        quoted = '"' + table.replace('"', '""') + '"'
        rows = conn.execute(f"SELECT * FROM {quoted} ORDER BY rowid").fetchall()
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def _fill(url: str, rows: int, table: str = "items") -> None:
    """A table ``table`` (id, a, b) with ``rows`` rows, through the target's own connection."""
    with open_target(url) as target:
        q = target.quote(table)
        target.execute(f"CREATE TABLE {q} (id INTEGER PRIMARY KEY, a INTEGER, b VARCHAR(40))")
        if target.dialect == "mysql":
            target.execute(f"INSERT INTO {q} SELECT seq, seq % 97, MD5(seq) FROM seq_1_to_{rows}")
        elif target.dialect == "postgres":
            target.execute(f"INSERT INTO {q} SELECT g, g % 97, md5(g::text) FROM generate_series(1, {rows}) g")
        else:
            target.execute(
                f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})"
                f" INSERT INTO {q} SELECT i, i % 97, hex(randomblob(8)) FROM n"
            )


@pytest.fixture(params=["postgres", "mysql", "sqlite"])
def db_url(request, pg_url, mysql_url, sqlite_url) -> str:
    return {"postgres": pg_url, "mysql": mysql_url, "sqlite": sqlite_url}[request.param]


# --- a throwaway PostgreSQL cluster (never restart the shared server) --------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def own_pg() -> Iterator[tuple[str, Path]]:
    """(URL, data directory) of a fresh PostgreSQL 15 cluster on a free loopback port; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="dbopt-fault-pg-"))
    postgres = pwd.getpwnam("postgres")
    os.chown(base, postgres.pw_uid, postgres.pw_gid)
    data, port = base / "data", _free_port()
    try:
        done = _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        assert done.returncode == 0, f"initdb failed: {done.stderr}"
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=32MB"
        log = base / "server.log"
        done = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        if done.returncode != 0:
            pytest.fail(f"could not start the throwaway cluster: {done.stderr}\n{log.read_text()[-2000:]}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", data
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _plan(dialect: str, **indexes: float) -> Plan:
    return Plan.model_validate({"id": "faults", "targets": [{"conn_id": "db", "dialect": dialect}], "indexes": indexes})


def _progress_phase(url: str) -> str | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT phase FROM pg_stat_progress_create_index LIMIT 1").fetchone()
    return row[0] if row else None


def test_server_restart_during_concurrent_build_next_run_cleans_invalid_leftover(own_pg):
    url, data = own_pg
    _fill(url, 300_000, "big")
    before = checksum(url, "big")
    spec = IndexSpec("big", ("b", "a"))
    outcome: dict[str, object] = {}

    def build() -> None:
        try:
            with open_target(url) as target:
                record_build(target, spec.name)  # as pipeline.create_index does before every build
                outcome["result"] = target.create_index(spec, lock_timeout_s=120, retries=0)
        except Exception as err:  # the server goes away mid-statement
            outcome["error"] = err

    # Two writers' locks pin the build in its INVALID stretch: CIC waits for the first before it
    # builds and for the second (taken while it builds) before it validates.
    first, second = psycopg.connect(url), psycopg.connect(url)
    first.execute("LOCK TABLE big IN ROW EXCLUSIVE MODE")
    worker = threading.Thread(target=build)
    worker.start()
    deadline = time.monotonic() + 60
    while _progress_phase(url) != "waiting for writers before build" and time.monotonic() < deadline:
        time.sleep(0.05)
    first.rollback()
    second.execute("LOCK TABLE big IN ROW EXCLUSIVE MODE")
    while not (_progress_phase(url) or "").startswith(("building index", "waiting for writers before validation")):
        assert time.monotonic() < deadline, "the concurrent build never started"
        time.sleep(0.01)
    phase_at_restart = _progress_phase(url)
    # -l: the restarted server must not inherit our output pipes (run() would wait for them to close)
    log = str(data.parent / "server.log")
    restarted = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", log, "-m", "fast", "-w", "restart")
    assert restarted.returncode == 0, restarted.stderr
    worker.join(60)
    for conn in (first, second):
        conn.close()
    result = outcome.get("result")
    assert "error" in outcome or (result is not None and result.status == "failed"), (phase_at_restart, outcome)

    with open_target(url) as target:
        leftover = [ix for ix in target.indexes(["big"]) if ix.name == spec.name]
        assert [ix.valid for ix in leftover] == [False], f"restart in phase {phase_at_restart!r}"
        # the history says dbopt started that build: the next run drops its leftover and builds again
        rerun = pipeline.create_index(_plan("postgres"), target, spec, dry_run=False)
        assert (rerun.status, rerun.extra["invalid_cleaned"]) == ("created", True), rerun
        assert [ix.valid for ix in target.indexes(["big"]) if ix.name == spec.name] == [True]
    assert checksum(url, "big") == before


# --- a long transaction holds the table (shared servers) --------------------------------------


@contextlib.contextmanager
def _holding(url: str) -> Iterator[None]:
    """Another session keeps a transaction open on ``items`` that an index build must wait for."""
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        with psycopg.connect(url) as conn:
            conn.execute("LOCK TABLE items IN ROW EXCLUSIVE MODE")  # a writer's lock, no row touched
            yield
            conn.rollback()
    elif u.get_backend_name() == "mysql":
        conn = pymysql.connect(host=u.host, user="root", database=u.database, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM items")  # a metadata lock until the transaction ends
        yield
        conn.rollback()
        conn.close()
    else:
        conn = sqlite3.connect(u.database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # the one write lock
        yield
        conn.execute("ROLLBACK")
        conn.close()


def test_long_transaction_build_gives_up_and_leaves_a_known_state(db_url):
    _fill(db_url, 5000)
    before = checksum(db_url, "items")
    spec = IndexSpec("items", ("a",))
    with open_target(db_url) as target:
        plan = _plan(target.dialect, lock_timeout_s=0.5, retries=0)
        with _holding(db_url):
            blocked = pipeline.create_index(plan, target, spec, dry_run=False)
            assert blocked.status == "failed" and blocked.attempts == 1, blocked
            assert pipeline.run_problems([blocked]), "a failed build is a problem of the run"
            names = {ix.name: ix.valid for ix in target.indexes(["items"])}
            if target.dialect == "postgres":
                # CIC registered the index before it waited; the drop is blocked too, and the result says so
                assert names.get(spec.name) is False
                assert "could not be dropped (still blocked" in (blocked.error or "")
                assert blocked.extra["left_behind"] == f"INVALID index {spec.name!r}"
            else:
                assert spec.name not in names  # nothing was changed
        after = pipeline.create_index(_plan(target.dialect), target, spec, dry_run=False)
        assert after.status == "created", after
        assert after.extra["invalid_cleaned"] is (target.dialect == "postgres")
        assert all(ix.valid for ix in target.indexes(["items"]))
    assert checksum(db_url, "items") == before


def test_postgres_retry_after_the_blocker_ends_builds_a_valid_index(pg_url):
    _fill(pg_url, 2000)
    spec = IndexSpec("items", ("a",))
    with open_target(pg_url) as target, psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE items IN ROW EXCLUSIVE MODE")
        threading.Timer(3.0, holder.rollback).start()  # ends after the first attempt and its cleanup timed out
        result = target.create_index(spec, lock_timeout_s=1, retries=3)
        time.sleep(0.1)
        valid = [ix.valid for ix in target.indexes(["items"]) if ix.name == spec.name]
    assert result.status != "created" or valid == [True], (result, valid)


# --- disk budget -------------------------------------------------------------------------------


def test_disk_budget_refusal_changes_nothing(db_url):
    _fill(db_url, 3000)
    before = checksum(db_url, "items")
    dialect = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}[make_url(db_url).get_backend_name()]
    plan = parse_plan(
        f"id: tiny\ntargets: [{{conn_id: db, dialect: {dialect}}}]\nindexes: {{storage_budget_mb: 0.001}}\n"
        "health_gate: {long_transactions_max: null}\n"
    )
    spec = IndexSpec("items", ("b", "a"))
    with open_target(db_url) as target:
        existing = {ix.name for ix in target.indexes(["items"])}
        with pytest.raises(GuardrailError, match="exceeds the cap"):
            guard_index_build(plan, target, spec)
        with pytest.raises(GuardrailError, match="must stay free"):
            check_disk(target, 10**6, Limits(disk_reserve_fraction=1.0))
        assert {ix.name for ix in target.indexes(["items"])} == existing
    assert checksum(db_url, "items") == before


# --- SQL in identifiers -------------------------------------------------------------------------

EVIL_NAMES = ['evil"; DROP TABLE victim; --', "it's `tick` 100%", "a\\b; DELETE FROM victim"]


def test_sql_in_identifiers_is_only_ever_a_name(db_url):
    _fill(db_url, 200, "victim")
    before = checksum(db_url, "victim")
    with open_target(db_url) as target:
        for i, name in enumerate(EVIL_NAMES):
            table, column = f"{name} t{i}", f"{name} c{i}"
            target.execute(f"CREATE TABLE {target.quote(table)} (id INTEGER PRIMARY KEY, {target.quote(column)} INT)")
            spec = IndexSpec(table, (column,), name=f"{name[:20]} i{i}")
            statement = target.index_ddl(spec)
            only_index_ddl(statement, target.dialect)  # one statement, whatever the names hold
            created = target.create_index(spec)
            assert created.status == "created", created
            assert [ix.columns for ix in target.indexes([table]) if ix.name == spec.name] == [(column,)]
            assert target.drop_index(table, spec.name).status == "dropped"
        assert checksum(db_url, "victim") == before


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_sql_in_plan_identifiers_is_a_plan_error(name):
    text = yaml.safe_dump(
        {"id": "evil", "targets": [{"conn_id": "db", "dialect": "postgres", "tables": [name]}]}, allow_unicode=True
    )
    with pytest.raises(PlanError, match=r"targets\.0\.tables\.0: .*not a plain table name"):
        parse_plan(text)


# --- bad plan files ------------------------------------------------------------------------------

_FIELDS = {
    "id": st.text(max_size=20),
    "schedule": st.fixed_dictionaries({}, optional={"cron": st.text(max_size=20), "timezone": st.text(max_size=20)}),
    "health_gate": st.dictionaries(st.sampled_from(["p95_ms_max", "long_transactions_max", "on_missing"]),
                                   st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none())),
    "indexes": st.dictionaries(st.sampled_from(["explicit", "storage_budget_mb", "lock_timeout_s", "retries"]),
                               st.one_of(st.integers(), st.floats(allow_nan=True), st.lists(st.text(max_size=5)))),
    "maintenance_window": st.dictionaries(st.sampled_from(["days", "start", "end"]),
                                          st.one_of(st.text(max_size=6), st.lists(st.text(max_size=4)))),
    "benchmark": st.dictionaries(st.sampled_from(["queries", "iterations", "targets"]),
                                 st.one_of(st.integers(), st.lists(st.dictionaries(st.text(max_size=4),
                                                                                   st.text(max_size=30))))),
}  # fmt: skip
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
_ANY = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_VALID = (ROOT / "include" / "plans" / "week17.yaml").read_text()


def _loads_or_plan_error(text: str) -> None:
    try:
        parse_plan(text, "fuzz.yaml")
    except PlanError as err:
        assert err.path == "fuzz.yaml" and err.problems and all(isinstance(p, str) for p in err.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_loads_or_raises_plan_error(text):
    _loads_or_plan_error(text)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional=_FIELDS), _ANY)
def test_plan_shaped_yaml_loads_or_raises_plan_error(fields, anything):
    data = {"id": "fuzz", "targets": [{"conn_id": "db", "dialect": "mysql"}], **fields, "x": anything}
    for document in (data, {k: v for k, v in data.items() if k != "x"}, anything):
        _loads_or_plan_error(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_plan_loads_or_raises_plan_error(data):
    lines = _VALID.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    cut = data.draw(st.integers(0, len(lines[i])))
    lines[i] = lines[i][:cut] + data.draw(st.text(max_size=12)) + lines[i][cut:]
    _loads_or_plan_error("\n".join(lines))


@pytest.mark.parametrize("text", ["id: 2001-13-45", "when: 2026-02-30", "x: !!float abc", "[" * 5000 + "]" * 5000])
def test_yaml_that_resolves_but_cannot_be_built_is_a_plan_error(text):
    _loads_or_plan_error(text)
