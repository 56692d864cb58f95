"""Guardrails: maintenance window, health limits, disk budget and the index-DDL-only statement check."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest

from dbopt.guardrails import (
    GuardrailError,
    Limits,
    check_disk,
    check_health,
    check_maintenance_window,
    disk_space,
    guard_index_build,
    health_problems,
    in_maintenance_window,
    only_index_ddl,
)
from dbopt.plan import MaintenanceWindow, parse_plan
from dbopt.targets import open_target
from dbopt.targets.base import HealthFigures, IndexSpec
from tests.db_users import pg_login, run_as_admin

SEOUL = ZoneInfo("Asia/Seoul")


def _plan(window: str = "", extra: str = ""):
    return parse_plan(
        f"""
id: guarded
schedule: {{cron: "0 9 * * 1", timezone: Asia/Seoul}}
targets: [{{conn_id: db, dialect: sqlite}}]
{window}
{extra}
"""
    )


# --- statement ---------------------------------------------------------------------------------


@pytest.fixture(params=["postgres", "mysql", "sqlite"])
def any_url(request, pg_url, mysql_url, sqlite_url):
    url = {"postgres": pg_url, "mysql": mysql_url, "sqlite": sqlite_url}[request.param]
    with open_target(url) as target:
        target.execute("CREATE TABLE orders (id INT PRIMARY KEY, customer INT, placed INT)")
    return url


def test_every_target_ddl_passes_the_statement_check(any_url):
    with open_target(any_url) as target:
        for spec in (
            IndexSpec("orders", ("customer", "placed"), descending=(False, True)),
            IndexSpec("orders", ("customer",), unique=True, name="u_customer"),
            IndexSpec("orders", ("customer",), include=("placed",)),
        ):
            only_index_ddl(target.index_ddl(spec), target.dialect)
            created = target.create_index(spec)
            assert created.status == "created", created.error
            dropped = target.drop_index("orders", spec.name)
            only_index_ddl(dropped.statement, target.dialect)


@pytest.mark.parametrize(
    ("dialect", "sql", "why"),
    [
        ("postgres", "CREATE INDEX x ON t (a); DROP TABLE t", "2 statements"),
        ("postgres", "DROP TABLE t", "DROP TABLE is not DROP INDEX"),
        ("postgres", "CREATE TABLE x (a int)", "not CREATE INDEX"),
        ("postgres", "UPDATE t SET a = 1", "UPDATE is not index DDL"),
        ("postgres", "DELETE FROM t", "not index DDL"),
        ("postgres", "CREATE INDEX x ON t ((f(a)))", "plain columns"),
        ("postgres", "CREATE INDEX x ON t (a) WHERE b > 1", "partial"),
        ("postgres", "DROP INDEX x CASCADE", "CASCADE"),
        ("postgres", "", "0 statements"),
        ("postgres", "CREATE INDEX ((", "does not parse"),
        ("mysql", "ALTER TABLE t ADD COLUMN c INT", "not ADD INDEX"),
        ("mysql", "ALTER TABLE t DROP INDEX x, DROP COLUMN c", "not ADD INDEX"),
        ("mysql", "ALTER TABLE t ADD PRIMARY KEY (a)", "not ADD INDEX"),
        ("mysql", "ALTER TABLE t ADD INDEX x ((a + 1))", "not ADD INDEX"),
        ("mysql", "ALTER TABLE t ADD INDEX x (a), ENGINE=MyISAM", "only ALGORITHM= and LOCK="),
        ("sqlite", "ALTER TABLE t ADD INDEX x (a)", "does not parse"),
        ("sqlite", "CREATE INDEX x ON t (a); VACUUM", "2 statements"),
    ],
)
def test_anything_but_one_index_ddl_is_refused(dialect, sql, why):
    with pytest.raises(GuardrailError, match=why.replace("(", r"\(")):
        only_index_ddl(sql, dialect)


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("mysql", "CREATE INDEX x ON t (a)"),
        ("mysql", "DROP INDEX x ON t"),
        ("mysql", "ALTER TABLE `d`.`t` ADD UNIQUE INDEX `x` (`a`), ALGORITHM=INPLACE, LOCK=NONE"),
        ("postgres", 'DROP INDEX CONCURRENTLY IF EXISTS "public"."x"'),
        ("sqlite", "DROP INDEX IF EXISTS x"),
    ],
)
def test_index_ddl_variants_pass(dialect, sql):
    only_index_ddl(sql, dialect)


# --- maintenance window ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "start", "end", "local", "inside"),
    [
        (["mon"], "09:00", "17:00", datetime(2026, 4, 20, 9, 0), True),  # a Monday
        (["mon"], "09:00", "17:00", datetime(2026, 4, 20, 17, 0), False),  # end is exclusive
        (["mon"], "09:00", "17:00", datetime(2026, 4, 21, 10, 0), False),  # Tuesday
        (["fri"], "22:00", "02:00", datetime(2026, 4, 24, 23, 30), True),  # Friday night
        (["fri"], "22:00", "02:00", datetime(2026, 4, 25, 1, 59), True),  # after midnight, Friday's window
        (["fri"], "22:00", "02:00", datetime(2026, 4, 25, 22, 30), False),  # Saturday night
        (["sun"], "00:00", "00:00", datetime(2026, 4, 26, 13, 0), True),  # whole day
    ],
)
def test_window_membership(days, start, end, local, inside):
    window = MaintenanceWindow(days=days, start=start, end=end)
    assert in_maintenance_window(window, local.replace(tzinfo=SEOUL)) is inside


def test_window_uses_the_plan_schedule_timezone():
    plan = _plan('maintenance_window: {days: [mon], start: "09:00", end: "10:00"}')
    # Monday 09:30 in Seoul is Monday 00:30 UTC
    assert "inside" in check_maintenance_window(plan, datetime(2026, 4, 20, 0, 30, tzinfo=UTC))
    with pytest.raises(GuardrailError, match=r"it is Sun 18:30 there.*opens \(Mon 2026-04-20 09:00\)"):
        check_maintenance_window(plan, datetime(2026, 4, 19, 9, 30, tzinfo=UTC))
    assert "no maintenance window" in check_maintenance_window(_plan())


# --- health ------------------------------------------------------------------------------------


def test_health_limits():
    limits = Limits(max_replication_lag_s=0.1, max_long_transactions=0, long_transaction_s=30)
    assert health_problems(HealthFigures(replication_lag_s=0.05, long_transactions=0), limits) == []
    assert health_problems(HealthFigures(), limits) == []  # unknown figures are the health gate's business
    [lag] = health_problems(HealthFigures(replication_lag_s=0.5), limits)
    assert "replication lag 0.500s exceeds 0.100s" in lag
    [txn] = health_problems(HealthFigures(long_transactions=2, longest_transaction_s=95), limits)
    assert "2 transaction(s) open longer than 30s" in txn and "95s" in txn
    assert health_problems(HealthFigures(long_transactions=5), Limits(max_long_transactions=None)) == []


def test_long_transaction_on_postgres_refuses_ddl(pg_url):
    run_as_admin(pg_url, "CREATE TABLE t (id int)")
    with psycopg.connect(pg_url) as holder, open_target(pg_url) as target:
        holder.execute("SELECT count(*) FROM t")  # opens the transaction (psycopg is not autocommit)
        time.sleep(1.2)
        with pytest.raises(GuardrailError, match=r"1 transaction\(s\) open longer than 1s"):
            check_health(target, Limits(max_long_transactions=0, long_transaction_s=1))
        holder.rollback()
        assert check_health(target, Limits(max_long_transactions=0, long_transaction_s=1)).long_transactions == 0


# --- disk --------------------------------------------------------------------------------------


def test_sqlite_disk_space_and_refusals(sqlite_url, tmp_path):
    with open_target(sqlite_url) as target:
        space = disk_space(target)
        assert space is not None and space.path == str(tmp_path) and 0 < space.free_bytes <= space.total_bytes
        assert "MB free" in check_disk(target, 1000, Limits())
        with pytest.raises(GuardrailError, match="exceeds the cap"):
            check_disk(target, 2_000_000, Limits(index_cap_bytes=1_000_000))
        with pytest.raises(GuardrailError, match="must stay free"):
            check_disk(target, space.free_bytes, Limits())


def test_postgres_disk_space_needs_the_data_directory(pg_url):
    with open_target(pg_url) as target:
        space = disk_space(target)  # superuser on loopback: the data directory is readable here
        assert space is not None and space.database_bytes and space.database_bytes > 0
    with pg_login(pg_url) as login, open_target(login.url) as restricted:
        assert disk_space(restricted) is None  # data_directory is hidden without pg_read_all_settings
        assert "server disk not readable" in check_disk(restricted, 1000, Limits(index_cap_bytes=10_000))
        with pytest.raises(GuardrailError, match="cannot be read from here and no cap"):
            check_disk(restricted, 1000, Limits(index_cap_bytes=None))


def test_mysql_disk_space_on_loopback(mysql_url):
    with open_target(mysql_url) as target:
        space = disk_space(target)
        assert space is not None and space.path.startswith("/")


# --- all together ------------------------------------------------------------------------------


def test_guard_index_build_reports_what_it_checked(sqlite_url):
    with open_target(sqlite_url) as target:
        target.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INT)")
        target.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)"
            " INSERT INTO orders (customer) SELECT i % 7 FROM n"
        )
        spec = IndexSpec("orders", ("customer",))
        report = guard_index_build(_plan(), target, spec)
        assert report["statement"] == target.index_ddl(spec) and report["estimated_index_bytes"] > 0
        tiny = _plan(extra="indexes: {storage_budget_mb: 0.001}")
        with pytest.raises(GuardrailError, match="exceeds the cap"):
            guard_index_build(tiny, target, spec)
        closed = _plan('maintenance_window: {days: [sat], start: "01:00", end: "01:01"}')
        with pytest.raises(GuardrailError, match="outside the maintenance window"):
            guard_index_build(closed, target, spec, now=datetime(2026, 4, 20, 12, 0, tzinfo=SEOUL))
        assert target.indexes(["orders"]) == []  # nothing was built by any refusal
