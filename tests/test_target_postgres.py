"""PostgresTarget against the real PostgreSQL 15 server, each test in a fresh database (``pg_url``)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from dbopt.targets import postgres
from dbopt.targets.base import TOOL_MARKER, IndexSpec, TargetError, WorkloadFilter
from dbopt.targets.postgres import PostgresTarget

# serial: runs alone after the parallel tests (Makefile); it resets server-wide statement statistics
# (performance_schema digests, pg_qualstats) that other tests read their workloads from
pytestmark = pytest.mark.serial

EVIL = 'x"; DROP TABLE t; --'

ORDERS = """
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id int NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    amount numeric(10, 2) NOT NULL,
    note text
);
INSERT INTO orders (customer_id, status, created_at, amount, note)
SELECT g % 2000, (ARRAY['new', 'paid', 'shipped', 'cancelled', 'refunded'])[1 + g % 5],
       now() - g * interval '1 minute', (g % 500) + 0.25, 'note ' || g
FROM generate_series(1, 10000) g;
ANALYZE orders;
"""


@pytest.fixture
def target(pg_url: str) -> Iterator[PostgresTarget]:
    with PostgresTarget(pg_url) as t:
        yield t


@pytest.fixture
def orders(target: PostgresTarget) -> PostgresTarget:
    target.execute(ORDERS)
    return target


@pytest.fixture
def other_session(pg_url: str) -> Iterator[psycopg.Connection]:
    """A second, application-like session (its own transactions)."""
    with psycopg.connect(pg_url) as conn:
        yield conn


def index_names(target: PostgresTarget, table: str = "orders") -> dict[str, bool]:
    """name -> indisvalid, straight from pg_index (independent of PostgresTarget.indexes)."""
    rows = target.execute(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass(%s)",
        [sql.Identifier(table).as_string(None)],
    )
    return dict(rows)


def hypothetical_count(target: PostgresTarget) -> int:
    return target.execute("SELECT count(*) FROM hypopg()")[0][0]


# --- plumbing ----------------------------------------------------------------------------------
def test_quote_version_execute_and_timed(target: PostgresTarget) -> None:
    assert target.quote('a"b') == '"a""b"'
    assert target.quote("plain") == '"plain"'
    assert target.server_version().startswith("15")
    assert target.execute("SELECT 1, 'x'") == [(1, "x")]
    assert target.execute("CREATE TABLE t (a int)") == []
    assert target.execute("INSERT INTO t VALUES (%s), (%s)", [1, 2]) == []
    assert target.execute("SELECT sum(a) FROM t") == [(3,)]
    assert target.timed("SELECT count(*) FROM t") > 0
    with pytest.raises(TargetError, match="no_such_table"):
        target.execute("SELECT * FROM no_such_table")
    # every statement dbopt sent is tagged
    texts = [q for (q,) in target.execute("SELECT query FROM pg_stat_statements WHERE query LIKE '%sum(a)%'")]
    assert texts and all(q.startswith(TOOL_MARKER) for q in texts if "pg_stat_statements" not in q)


def test_bad_url_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="cannot connect"):
        PostgresTarget("postgresql://postgres@127.0.0.1:1/nowhere")


# --- workload ----------------------------------------------------------------------------------
def test_workload_empty_statistics_give_empty_list(target: PostgresTarget) -> None:
    target.reset_workload()
    assert target.workload() == []


def test_workload_returns_application_queries_with_calls_not_dbopts_own(
    orders: PostgresTarget, other_session: psycopg.Connection
) -> None:
    orders.reset_workload()
    with other_session.cursor() as cur:  # a non-autocommit app: BEGIN/COMMIT are sent too
        for customer in (1, 2, 3):
            cur.execute("SELECT * FROM orders WHERE customer_id = %s", [customer])
        for status in ("paid", "new"):
            cur.execute(f"SELECT count(*) FROM orders WHERE status = '{status}'")
        cur.execute("SET work_mem = '8MB'")
        cur.execute("SHOW work_mem")
        cur.execute("EXPLAIN SELECT 1")
        cur.execute("CREATE TABLE app_tmp (a int)")
    other_session.commit()
    orders.execute("SELECT max(amount) FROM orders")  # dbopt's own: tagged, left out
    orders.explain("SELECT * FROM orders WHERE note = $1")

    found = {s.query: s for s in orders.workload()}
    assert set(found) == {
        "SELECT * FROM orders WHERE customer_id = $1",
        "SELECT count(*) FROM orders WHERE status = $1",
    }
    by_customer = found["SELECT * FROM orders WHERE customer_id = $1"]
    assert by_customer.calls == 3
    assert by_customer.rows == 15
    assert by_customer.source == "pg_stat_statements"
    assert by_customer.digest.lstrip("-").isdigit()
    assert by_customer.total_ms > 0 and by_customer.mean_ms == pytest.approx(by_customer.total_ms / 3)
    assert by_customer.stddev_ms is not None and by_customer.shared_blks_hit is not None
    assert found["SELECT count(*) FROM orders WHERE status = $1"].calls == 2

    assert [s.calls for s in orders.workload(WorkloadFilter(min_calls=3))] == [3]
    assert orders.workload(WorkloadFilter(exclude=("customer_id", "status"))) == []


def test_workload_without_extension_names_the_fix(target: PostgresTarget) -> None:
    target.execute("DROP EXTENSION pg_stat_statements")
    with pytest.raises(TargetError, match=r"CREATE EXTENSION pg_stat_statements.*shared_preload_libraries"):
        target.workload()
    with pytest.raises(TargetError, match="CREATE EXTENSION pg_stat_statements"):
        target.reset_workload()


# --- plans -------------------------------------------------------------------------------------
def test_explain_concrete_and_normalized_seq_then_index(orders: PostgresTarget) -> None:
    concrete = "SELECT * FROM orders WHERE customer_id = 42"
    normalized = "SELECT * FROM orders WHERE customer_id = $1 AND status <> $2;"
    for query in (concrete, normalized):
        plan = orders.explain(query)
        assert plan.full_scans() == {"orders"} and not plan.indexes_used()
        assert plan.total_cost and plan.total_cost > 0 and plan.est_rows is not None
        assert isinstance(plan.raw, list) and "Plan" in plan.raw[0]

    assert orders.create_index(IndexSpec("orders", ("customer_id",), name="ix_customer")).status == "created"
    for query in (concrete, normalized):
        plan = orders.explain(query)
        assert not plan.full_scans()
        assert plan.indexes_used() == {"ix_customer"}
        assert {s.access for s in plan.scans} <= {"index", "bitmap"}

    # the generic-plan PREPARE is removed, a user's own prepared statement is not
    orders.execute("PREPARE mine AS SELECT 1")
    orders.explain("SELECT * FROM orders WHERE note = $1 LIMIT $2")
    assert [n for (n,) in orders.execute("SELECT name FROM pg_prepared_statements")] == ["mine"]


@pytest.mark.parametrize("tail", ["", " WHERE id = $1"])
def test_explain_of_several_statements_runs_none_of_them(orders: PostgresTarget, tail: str) -> None:
    # through the simple protocol "EXPLAIN SELECT …; COMMIT; CREATE TABLE …" would end the read-only
    # transaction and run the CREATE: the application's text goes through the extended protocol
    with pytest.raises(TargetError, match="multiple commands"):
        orders.explain(f"SELECT id FROM orders{tail}; COMMIT; CREATE TABLE pwned (x int)")
    assert orders.execute("SELECT to_regclass('pwned')") == [(None,)]


def test_explain_detects_sort_and_index_only_and_bitmap_or(orders: PostgresTarget) -> None:
    assert orders.explain("SELECT * FROM orders ORDER BY note").sort
    by_pk = orders.explain("SELECT * FROM orders ORDER BY id LIMIT 5")
    assert not by_pk.sort and by_pk.scans[0].access == "index" and by_pk.scans[0].index == "orders_pkey"
    index_only = orders.explain("SELECT id FROM orders WHERE id < 100")
    assert [(s.access, s.index) for s in index_only.scans] == [("index_only", "orders_pkey")]

    orders.create_index(IndexSpec("orders", ("customer_id",), name="ix_customer"))
    orders.create_index(IndexSpec("orders", ("note",), name="ix_note"))
    either = orders.explain("SELECT * FROM orders WHERE customer_id = 7 OR note = 'note 99'")
    assert {(s.access, s.index) for s in either.scans} == {("bitmap", "ix_customer"), ("bitmap", "ix_note")}


def test_explain_bad_query_is_a_target_error(orders: PostgresTarget) -> None:
    with pytest.raises(TargetError, match="cannot EXPLAIN"):
        orders.explain("SELECT nope FROM orders")
    with pytest.raises(TargetError, match="cannot EXPLAIN"):
        orders.explain("SELECT * FROM orders WHERE nope = $1")
    assert orders.execute("SELECT count(*) FROM pg_prepared_statements") == [(0,)]


def test_whatif_uses_hypothetical_index_under_spec_name_and_leaves_none(orders: PostgresTarget) -> None:
    spec = IndexSpec("orders", ("customer_id", "created_at"), descending=(False, True), include=("amount",))
    for query in ("SELECT * FROM orders WHERE customer_id = 42", "SELECT * FROM orders WHERE customer_id = $1"):
        plan = orders.whatif(query, [spec])
        assert plan is not None
        assert plan.indexes_used() == {spec.name}
        assert not plan.full_scans()
        assert hypothetical_count(orders) == 0
    assert spec.name not in index_names(orders)  # nothing real was built
    # a query the index does not help still plans, without the hypothetical index
    assert orders.whatif("SELECT * FROM orders WHERE note = 'x'", [spec]).full_scans() == {"orders"}

    with pytest.raises(TargetError, match="HypoPG rejected"):
        orders.whatif("SELECT 1", [spec, IndexSpec("orders", ("no_such_column",))])
    assert hypothetical_count(orders) == 0


def test_whatif_without_hypopg_is_none(orders: PostgresTarget) -> None:
    orders.execute("DROP EXTENSION hypopg")
    assert orders.whatif("SELECT * FROM orders WHERE customer_id = 1", [IndexSpec("orders", ("customer_id",))]) is None


# --- catalog -----------------------------------------------------------------------------------
def test_indexes_report_desc_include_unique_partial_invalid_redundant(
    orders: PostgresTarget, other_session: psycopg.Connection
) -> None:
    orders.execute("CREATE INDEX ix_cust_created ON orders (customer_id, created_at DESC) INCLUDE (amount)")
    orders.execute("CREATE INDEX ix_cust ON orders (customer_id)")
    orders.execute("CREATE UNIQUE INDEX ix_note ON orders (note)")
    orders.execute("CREATE INDEX ix_lower_status ON orders (lower(status)) WHERE amount > 100")
    other_session.autocommit = True
    with pytest.raises(psycopg.errors.UniqueViolation):  # a failed CIC leaves an INVALID index
        other_session.execute("CREATE UNIQUE INDEX CONCURRENTLY ix_bad ON orders (status)")
    orders.execute("SELECT * FROM orders WHERE id = 5")

    found = {ix.name: ix for ix in orders.indexes(["orders"])}
    assert set(found) == {"orders_pkey", "ix_cust_created", "ix_cust", "ix_note", "ix_lower_status", "ix_bad"}
    wide = found["ix_cust_created"]
    assert (wide.columns, wide.descending, wide.include) == (("customer_id", "created_at"), (False, True), ("amount",))
    assert wide.table == "orders" and wide.schema == "public" and wide.valid
    assert wide.size_bytes and wide.size_bytes > 0 and wide.unused and wide.scans == 0
    assert "DESC" in wide.definition and "INCLUDE (amount)" in wide.definition
    assert found["ix_cust"].redundant_with == "ix_cust_created"
    assert wide.redundant_with is None
    assert found["ix_note"].unique and not found["ix_note"].unused and found["ix_note"].redundant_with is None
    pkey = found["orders_pkey"]
    assert pkey.primary and pkey.unique and pkey.scans >= 1 and not pkey.unused
    lowered = found["ix_lower_status"]
    assert lowered.partial and lowered.expression and lowered.columns == ("lower(status)",)
    assert not found["ix_bad"].valid

    assert {ix.name for ix in orders.indexes()} == set(found)
    assert orders.indexes(["no_such_table"]) == []


def test_table_stats_analyzes_a_never_analyzed_table(target: PostgresTarget) -> None:
    target.execute("CREATE TABLE fresh (id int PRIMARY KEY, kind text, empty text)")
    target.execute(
        "INSERT INTO fresh SELECT g, CASE WHEN g % 10 = 0 THEN 'rare' ELSE 'common' END, NULL "
        "FROM generate_series(1, 5000) g"
    )
    stats = target.table_stats(["fresh"])["fresh"]
    assert stats.rows == 5000
    assert stats.columns == ("id", "kind", "empty")
    assert stats.distinct["id"] == pytest.approx(5000)  # n_distinct -1 = every row distinct
    assert stats.distinct["kind"] == 2
    assert stats.top_frequency["kind"] == pytest.approx(0.9)
    assert stats.top_frequency["id"] is None  # unique: no most-common values
    assert stats.distinct["empty"] == 0
    assert stats.size_bytes and stats.size_bytes > 0
    assert stats.writes == 5000
    with pytest.raises(TargetError, match="'missing' not found"):
        target.table_stats(["missing"])


# --- changes -----------------------------------------------------------------------------------
def test_index_ddl_is_composed_and_quoted(target: PostgresTarget) -> None:
    spec = IndexSpec("orders", ("customer_id", "created_at"), (False, True), ("amount",), name="ix")
    assert target.index_ddl(spec) == (
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "ix" ON "public"."orders" ("customer_id", "created_at" DESC) '
        'INCLUDE ("amount")'
    )
    unique = IndexSpec("orders", ("note",), unique=True, name="ux", schema="sales")
    assert (
        target.index_ddl(unique) == 'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "ux" ON "sales"."orders" ("note")'
    )
    dotted = IndexSpec("sales.orders", ("note",), unique=True, name="ux")
    assert target.index_ddl(dotted) == target.index_ddl(unique)


def test_create_index_is_idempotent(orders: PostgresTarget) -> None:
    spec = IndexSpec("orders", ("status", "created_at"))
    first = orders.create_index(spec)
    assert (first.status, first.attempts, first.changed, first.error) == ("created", 1, True, None)
    assert first.statement == orders.index_ddl(spec) and first.duration_ms > 0
    second = orders.create_index(spec)
    assert (second.status, second.changed) == ("exists", False)
    assert index_names(orders)[spec.name] is True
    # the session timeouts are back to the defaults
    assert orders.execute("SHOW lock_timeout") == [("0",)]
    assert orders.execute("SHOW statement_timeout") == [("0",)]


def test_failed_concurrent_build_returns_failed_and_leaves_no_invalid_index(
    orders: PostgresTarget, other_session: psycopg.Connection
) -> None:
    # An open REPEATABLE READ snapshot makes CIC wait ("waiting for old snapshots") past lock_timeout.
    other_session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    other_session.execute("SELECT 1")
    spec = IndexSpec("orders", ("amount",))
    result = orders.create_index(spec, lock_timeout_s=0.5, retries=1)
    other_session.rollback()

    assert result.status == "failed" and result.attempts == 2
    assert "lock timeout" in result.error
    assert result.invalid_cleaned
    assert spec.name not in index_names(orders)
    assert all(ix.valid for ix in orders.indexes(["orders"]))
    assert orders.execute("SHOW lock_timeout") == [("0",)]


def test_build_blocked_by_a_writer_reports_leftover_and_a_later_call_leaves_it_alone(
    orders: PostgresTarget, other_session: psycopg.Connection
) -> None:
    # An uncommitted write blocks both CIC and DROP INDEX CONCURRENTLY of its leftover.
    other_session.execute("UPDATE orders SET note = 'x' WHERE id = 1")
    spec = IndexSpec("orders", ("amount",))
    blocked = orders.create_index(spec, lock_timeout_s=0.3, retries=0)
    assert blocked.status == "failed" and "lock timeout" in blocked.error
    assert "could not be dropped (still blocked" in blocked.error
    assert blocked.left_behind == f"INVALID index {spec.name!r}"
    assert index_names(orders)[spec.name] is False
    other_session.commit()

    # a later call cannot tell whose INVALID index it is: left alone (pipeline.create_index can tell)
    rerun = orders.create_index(spec, lock_timeout_s=2)
    assert rerun.status == "failed" and "left alone" in rerun.error
    assert index_names(orders)[spec.name] is False


def test_unique_violation_fails_without_retry_or_leftover(orders: PostgresTarget) -> None:
    spec = IndexSpec("orders", ("status",), unique=True)
    result = orders.create_index(spec, lock_timeout_s=1)
    assert (result.status, result.attempts, result.invalid_cleaned) == ("failed", 1, True)
    assert "could not create unique index" in result.error
    assert spec.name not in index_names(orders)


def test_drop_index_is_idempotent(orders: PostgresTarget) -> None:
    spec = IndexSpec("orders", ("customer_id",))
    orders.create_index(spec)
    dropped = orders.drop_index("orders", spec.name)
    assert (dropped.action, dropped.status, dropped.changed) == ("drop", "dropped", True)
    assert dropped.statement == f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{spec.name}"'
    assert spec.name not in index_names(orders)
    assert orders.drop_index("orders", spec.name).status == "absent"
    assert orders.drop_index("orders", "orders_pkey").status == "failed"  # backs the primary key
    orders.execute("CREATE TABLE other (a int)")
    wrong_table = orders.drop_index("other", "orders_pkey")
    assert wrong_table.status == "failed" and "not an index of 'other'" in wrong_table.error
    assert "orders_pkey" in index_names(orders)


def test_schema_qualified_tables(target: PostgresTarget) -> None:
    target.execute("CREATE SCHEMA sales")
    target.execute("CREATE TABLE sales.orders (id int, region text)")
    target.execute("INSERT INTO sales.orders SELECT g, 'r' || (g % 7) FROM generate_series(1, 2000) g")
    spec = IndexSpec("orders", ("region",), schema="sales")
    assert target.create_index(spec).status == "created"
    assert target.create_index(IndexSpec("sales.orders", ("region",), name=spec.name)).status == "exists"
    (ix,) = target.indexes(["sales.orders"])
    assert (ix.schema, ix.table, ix.name, ix.columns) == ("sales", "orders", spec.name, ("region",))
    assert target.indexes(["orders"]) == []  # public.orders does not exist
    assert target.table_stats(["sales.orders"])["sales.orders"].distinct["region"] == 7
    assert target.drop_index("sales.orders", spec.name).status == "dropped"


def test_hostile_identifiers_are_quoted(target: PostgresTarget, tmp_path) -> None:
    target.execute("CREATE TABLE t (a int)")
    target.execute("INSERT INTO t SELECT generate_series(1, 100)")
    evil_table = sql.Identifier(EVIL).as_string(None)
    target.execute(f"CREATE TABLE {evil_table} ({evil_table} int)")
    target.execute(f"INSERT INTO {evil_table} SELECT generate_series(1, 3000)")
    spec = IndexSpec(EVIL, (EVIL,), name=EVIL + " ix")
    query = f"SELECT * FROM {evil_table} WHERE {evil_table} = 5"

    assert target.whatif(query, [spec]).indexes_used() == {spec.name}
    assert target.create_index(spec).status == "created"
    assert target.create_index(spec).status == "exists"
    assert target.explain(query).indexes_used() == {spec.name}
    assert [(ix.name, ix.columns) for ix in target.indexes([EVIL])] == [(spec.name, (EVIL,))]
    assert target.table_stats([EVIL])[EVIL].distinct[EVIL] == pytest.approx(3000)
    assert target.backup([EVIL], tmp_path, undo=[spec]).verified
    assert target.drop_index(EVIL, spec.name).status == "dropped"

    assert target.execute("SELECT count(*) FROM t") == [(100,)]
    assert target.execute(f"SELECT count(*) FROM {evil_table}") == [(3000,)]


# --- health and safety -------------------------------------------------------------------------
def test_health_figures_are_sane(orders: PostgresTarget, other_session: psycopg.Connection) -> None:
    other_session.execute("SELECT count(*) FROM orders")  # opens a transaction and leaves it open
    time.sleep(1.1)
    health = orders.health(long_transaction_s=1.0)
    other_session.rollback()

    assert health.cache_hit_ratio is not None and 0.0 <= health.cache_hit_ratio <= 1.0
    assert health.connections_max and 2 <= health.connections_used <= health.connections_max
    assert health.long_transactions == 1 and health.longest_transaction_s >= 1.0
    assert health.replication_lag_s is None  # the test server has no replicas
    assert health.deadlocks is not None and health.deadlocks >= 0
    assert health.server_version.startswith("15")
    calm = orders.health(long_transaction_s=60)
    assert calm.long_transactions == 0 and calm.longest_transaction_s == 0.0


def psql_file(pg_url: str, path: str) -> None:
    """Run a script the way a person restoring would (pg_dump output holds psql meta-commands)."""
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg_url, "-f", path], check=True, timeout=60)


def test_backup_with_pg_dump_verifies_and_restores(orders: PostgresTarget, pg_url: str, tmp_path) -> None:
    spec = IndexSpec("orders", ("customer_id",))
    orders.create_index(spec)
    result = orders.backup(["orders"], tmp_path / "backups", undo=[spec])
    assert result.kind == "ddl_dump" and result.verified and "pg_dump" in result.detail
    assert result.tables == ("orders",) and result.size_bytes and result.size_bytes > 0
    script = Path(result.path).read_text()
    assert "CREATE TABLE public.orders (" in script and spec.name in script
    assert "INSERT" not in script and "COPY" not in script  # schema only
    undo = Path(result.undo_path).read_text()
    assert f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{spec.name}";' in undo
    assert orders.execute("SELECT count(*) FROM orders") == [(10000,)]  # data untouched

    orders.execute("DROP TABLE orders")
    psql_file(pg_url, result.path)
    assert {spec.name, "orders_pkey"} <= set(index_names(orders))
    psql_file(pg_url, result.undo_path)
    assert spec.name not in index_names(orders)


def test_backup_without_pg_dump_reconstructs_from_catalog(
    orders: PostgresTarget, pg_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres.shutil, "which", lambda _: None)
    orders.execute("CREATE INDEX ix_status ON orders (status) WHERE amount > 10")
    orders.execute("ALTER TABLE orders ADD CONSTRAINT amount_positive CHECK (amount > 0)")
    result = orders.backup(["public.orders"], tmp_path, undo=())
    assert result.verified and "catalog" in result.detail and result.undo_path is None
    script = Path(result.path).read_text()
    assert 'CREATE TABLE "public"."orders" (' in script

    orders.execute("DROP TABLE orders")
    psql_file(pg_url, result.path)
    assert set(index_names(orders)) == {"orders_pkey", "ix_status"}
    orders.execute("INSERT INTO orders (customer_id, status, created_at, amount) VALUES (1, 'new', now(), 5)")
    with pytest.raises(TargetError, match="amount_positive"):
        orders.execute("INSERT INTO orders (customer_id, status, created_at, amount) VALUES (1, 'new', now(), -5)")


def test_backup_of_missing_table_fails_before_writing(target: PostgresTarget, tmp_path) -> None:
    with pytest.raises(TargetError, match="'nope' not found"):
        target.backup(["nope"], tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_workload_examples_come_from_pg_qualstats(pg_url):
    """pg_qualstats keeps one executed query with its constants per queryid: the replayable example."""
    with psycopg.connect(pg_url, autocommit=True) as app:
        app.execute("CREATE TABLE ex (id int PRIMARY KEY, c int, s text)")
        app.execute("INSERT INTO ex SELECT i, i % 100, 'x' || i FROM generate_series(1, 2000) i")
        with PostgresTarget(pg_url) as target:
            target.reset_workload()
            for c in (3, 5, 7):
                app.execute(f"SELECT * FROM ex WHERE c = {c} AND s = 'x{c}'")
            (stmt,) = [s for s in target.workload() if "from ex" in s.query.lower()]
            assert "$1" in stmt.query and stmt.calls == 3
            assert stmt.example is not None and "$" not in stmt.example
            assert target.execute(stmt.example) is not None  # it runs as is
