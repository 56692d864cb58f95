"""SQLiteTarget against real database files (small data; see the brief)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from dbopt.targets import open_target
from dbopt.targets.base import TOOL_MARKER, IndexSpec, TargetError, WorkloadFilter
from dbopt.targets.querylog import QueryLog, timed_execute
from dbopt.targets.sqlite import SQLiteTarget
from dbopt.targets.sqlite_parse import parse_plan, query_names

HOSTILE = 'x"; DROP TABLE t; --'
HOSTILE_INDEX = 'i"; DROP TABLE t; --'
ORDERS = 4000


def _db_path(url: str) -> Path:
    return Path(make_url(url).database)


@pytest.fixture
def app_db(sqlite_url: str) -> str:
    """orders (4000 rows: 400 customers, 3 statuses) and customers, as an application made them."""
    conn = sqlite3.connect(_db_path(sqlite_url))
    conn.executescript(
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, region TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, status TEXT, amount REAL,
                             created_at TEXT);
        CREATE INDEX orders_status ON orders (status);
        """
    )
    conn.executemany(
        "INSERT INTO customers VALUES (?, ?, ?)", [(i, f"c{i}@example.com", f"r{i % 5}") for i in range(400)]
    )
    conn.executemany(
        "INSERT INTO orders (customer_id, status, amount, created_at) VALUES (?, ?, ?, ?)",
        [(i % 400, ("paid", "new", "void")[i % 3], i * 0.5, f"2026-01-{i % 28 + 1:02d}") for i in range(ORDERS)],
    )
    conn.commit()
    conn.close()
    return sqlite_url


@pytest.fixture
def target(app_db: str) -> Iterator[SQLiteTarget]:
    with SQLiteTarget(make_url(app_db)) as t:
        yield t


def _fingerprint(path: Path) -> tuple[str, float, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, path.stat().st_size


# --- connecting ------------------------------------------------------------------------------


def test_open_target_and_log_path(app_db: str, tmp_path: Path) -> None:
    with open_target(app_db) as t:
        assert isinstance(t, SQLiteTarget) and t.dialect == "sqlite"
        assert t.log_path == Path(f"{_db_path(app_db)}.queries.jsonl")
        assert t.server_version() == sqlite3.sqlite_version
    with SQLiteTarget(f"{app_db}?query_log={tmp_path / 'elsewhere.jsonl'}") as t:
        assert t.log_path == tmp_path / "elsewhere.jsonl"
        assert t.path == _db_path(app_db)  # the query string is not part of the file name


def test_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="database file URL"):
        SQLiteTarget("sqlite://")
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("these are not SQLite pages " * 200)
    with pytest.raises(TargetError, match=str(not_a_db)):
        SQLiteTarget(f"sqlite:///{not_a_db}")
    with pytest.raises(TargetError, match="no/such/dir"):
        SQLiteTarget(f"sqlite:///{tmp_path}/no/such/dir/app.db")


def test_every_statement_is_tagged(target: SQLiteTarget, tmp_path: Path) -> None:
    seen: list[str] = []
    target._conn.set_trace_callback(seen.append)  # the real statements sqlite3 receives
    spec = IndexSpec("orders", ("customer_id",))
    target.explain("SELECT * FROM orders WHERE id = 1")
    target.whatif("SELECT * FROM orders WHERE customer_id = ?", [spec])
    target.indexes()
    target.table_stats(["orders"])
    target.create_index(spec)
    target.drop_index("orders", spec.name)
    target.health()
    target.integrity_ok()
    target.backup(["orders"], tmp_path / "backups")

    # "-- " marks statements SQLite runs internally for a virtual table (dbstat), not ours
    untagged = [s for s in seen if not s.startswith((TOOL_MARKER, "-- "))]
    assert seen and not untagged, untagged


# --- workload --------------------------------------------------------------------------------


def test_workload_comes_from_the_query_log(target: SQLiteTarget) -> None:
    assert target.workload() == []  # nothing logged yet
    app = sqlite3.connect(target.path, isolation_level=None)
    log = QueryLog(target.log_path)
    for customer in (3, 17, 42):
        timed_execute(app, log, "SELECT * FROM orders WHERE customer_id = ? AND status = ?", (customer, "paid"))
    timed_execute(app, log, "SELECT COUNT(*) FROM customers")
    app.close()

    workload = target.workload(WorkloadFilter(min_calls=2))

    paid = sum(1 for i in range(ORDERS) if i % 400 in (3, 17, 42) and i % 3 == 0)
    assert [(s.query, s.calls, s.rows) for s in workload] == [
        ("SELECT * FROM orders WHERE customer_id = ? AND status = ?", 3, paid)
    ]
    assert target.explain(workload[0].query).full_scans() == set()  # normalized text can be planned
    assert target.explain(workload[0].example).scans[0].table == "orders"

    target.reset_workload()

    assert target.workload() == []
    rotated = list(target.log_path.parent.glob(f"{target.log_path.stem}.*.jsonl"))
    assert len(rotated) == 1 and len(rotated[0].read_text().splitlines()) == 4  # kept, not deleted


# --- plans -----------------------------------------------------------------------------------


def test_explain_shapes_of_real_plans(target: SQLiteTarget) -> None:
    target.execute("CREATE INDEX orders_customer_amount ON orders (customer_id, amount)")

    seq = target.explain("SELECT * FROM orders WHERE amount > 10")
    assert [(s.table, s.access, s.index) for s in seq.scans] == [("orders", "seq", None)]
    assert seq.full_scans() == {"orders"} and seq.total_cost is None
    assert seq.raw and all(len(row) == 4 for row in seq.raw)

    search = target.explain("SELECT * FROM orders WHERE status = 'paid'")
    assert [(s.access, s.index) for s in search.scans] == [("index", "orders_status")]

    full_index = target.explain("SELECT * FROM orders ORDER BY status")
    assert [(s.access, s.index) for s in full_index.scans] == [("index", "orders_status")]
    assert not full_index.sort  # the index delivers the order

    covering = target.explain("SELECT amount FROM orders WHERE customer_id = ?")  # normalized text
    assert [(s.access, s.index) for s in covering.scans] == [("index_only", "orders_customer_amount")]

    rowid = target.explain("SELECT * FROM orders WHERE id = ?")
    assert [(s.access, s.index) for s in rowid.scans] == [("rowid", None)]

    assert target.explain("SELECT * FROM orders ORDER BY created_at").sort
    assert target.explain("SELECT created_at, COUNT(*) FROM orders GROUP BY created_at").sort
    assert target.explain("SELECT DISTINCT region FROM customers").sort

    joined = target.explain(
        "WITH big AS MATERIALIZED (SELECT customer_id FROM orders WHERE amount > ?) "
        "SELECT c.email FROM customers AS c JOIN orders o ON o.customer_id = c.id WHERE c.id IN (SELECT * FROM big)"
    )
    assert {s.table for s in joined.scans} == {"customers", "orders"}  # aliases resolved, CTE left out
    assert "orders_customer_amount" in joined.indexes_used()

    with pytest.raises(TargetError, match="no such table"):
        target.explain("SELECT * FROM nowhere")


@pytest.mark.parametrize(
    ("detail", "scan"),
    [  # wording of SQLite before 3.36, automatic indexes, virtual tables
        ("SCAN TABLE orders AS o USING COVERING INDEX ix (~100 rows)", ("orders", "index_only", "ix", 100.0)),
        ("SEARCH TABLE orders USING INTEGER PRIMARY KEY (rowid=?) (~1 row)", ("orders", "rowid", None, 1.0)),
        ("SEARCH c USING AUTOMATIC COVERING INDEX (region=?)", ("customers", "seq", None, None)),
        ("SCAN docs VIRTUAL TABLE INDEX 0:", ("docs", "other", None, None)),
    ],
)
def test_plan_wording_of_other_versions(detail: str, scan: tuple) -> None:
    names = query_names("SELECT * FROM orders JOIN customers AS c ON 1")
    [parsed] = parse_plan([(2, 0, 0, detail)], names, ["orders", "customers"]).scans
    assert (parsed.table, parsed.access, parsed.index, parsed.est_rows) == scan


def test_whatif_plans_a_hypothetical_index_without_touching_the_file(target: SQLiteTarget) -> None:
    query = "SELECT * FROM orders WHERE customer_id = ? AND created_at > ?"
    before = _fingerprint(target.path)
    schema_before = target.execute("SELECT type, name, sql FROM sqlite_master")
    assert target.explain(query).full_scans() == {"orders"}
    spec = IndexSpec("orders", ("customer_id", "created_at"))

    plan = target.whatif(query, [spec])

    assert plan is not None
    assert [(s.table, s.access, s.index) for s in plan.scans] == [("orders", "index", spec.name)]
    assert _fingerprint(target.path) == before
    assert target.execute("SELECT type, name, sql FROM sqlite_master") == schema_before  # no index, no sqlite_stat1
    assert target.whatif(query, []).full_scans() == {"orders"}  # nothing left behind in the copy either


def test_whatif_weighs_indexes_by_sampled_statistics(target: SQLiteTarget) -> None:
    # status has 3 values (1333 rows each), customer_id 400 (10 each): with real figures the planner
    # prefers the selective hypothetical index over the existing unselective one, in either order.
    query = "SELECT * FROM orders WHERE status = ? AND customer_id = ?"
    by_customer = IndexSpec("orders", ("customer_id",))
    assert [s.index for s in target.whatif(query, [by_customer]).scans] == [by_customer.name]

    target.execute("DROP INDEX orders_status")
    target.execute("CREATE INDEX orders_customer ON orders (customer_id)")
    by_status = IndexSpec("orders", ("status",))
    assert [s.index for s in target.whatif(query, [by_status]).scans] == ["orders_customer"]


def test_whatif_with_a_bad_spec_is_a_clear_error(target: SQLiteTarget) -> None:
    with pytest.raises(TargetError, match="no_such_column"):
        target.whatif("SELECT * FROM orders", [IndexSpec("orders", ("no_such_column",))])


# --- catalog ---------------------------------------------------------------------------------


def test_indexes_report_every_kind(target: SQLiteTarget) -> None:
    target.execute("CREATE INDEX orders_customer ON orders (customer_id)")
    target.execute("CREATE INDEX orders_customer_created ON orders (customer_id, created_at DESC)")
    target.execute("CREATE INDEX orders_open ON orders (created_at) WHERE status <> 'void'")
    target.execute("CREATE INDEX customers_email_lower ON customers (lower(email))")
    target.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT, n INTEGER) WITHOUT ROWID")

    found = {ix.name: ix for ix in target.indexes()}

    assert set(found) == {
        "orders_status",
        "orders_customer",
        "orders_customer_created",
        "orders_open",
        "customers_email_lower",
        "sqlite_autoindex_customers_1",
        "sqlite_autoindex_kv_1",
    }
    desc = found["orders_customer_created"]
    assert (desc.columns, desc.descending, desc.redundant_with) == (("customer_id", "created_at"), (False, True), None)
    assert found["orders_customer"].redundant_with == "orders_customer_created"
    assert found["orders_open"].partial and found["orders_open"].redundant_with is None
    expr = found["customers_email_lower"]
    assert expr.expression and expr.columns == ("lower(email)",)
    unique = found["sqlite_autoindex_customers_1"]
    assert (unique.unique, unique.primary, unique.columns, unique.definition) == (True, False, ("email",), None)
    pk = found["sqlite_autoindex_kv_1"]
    assert (pk.primary, pk.columns, pk.include) == (True, ("k",), ("v", "n"))
    assert found["orders_status"].definition == "CREATE INDEX orders_status ON orders (status)"
    assert found["orders_status"].size_bytes and found["orders_status"].size_bytes > 4096
    assert all(ix.scans is None and ix.unused is None for ix in found.values())  # SQLite counts nothing
    customers = {ix.name for ix in target.indexes(["CUSTOMERS"])}  # names are case-insensitive
    assert customers == {"customers_email_lower", "sqlite_autoindex_customers_1"}


def test_table_stats(target: SQLiteTarget) -> None:
    stats = target.table_stats(["orders"])["orders"]

    assert stats.rows == ORDERS and stats.writes is None
    assert stats.columns == ("id", "customer_id", "status", "amount", "created_at")
    assert stats.distinct["status"] == 3 and stats.distinct["customer_id"] == 400
    assert stats.top_frequency["status"] == pytest.approx(1334 / ORDERS)
    assert stats.size_bytes and stats.size_bytes > 4096
    with pytest.raises(TargetError, match="no table 'nowhere'"):
        target.table_stats(["nowhere"])


# --- changes ---------------------------------------------------------------------------------


def test_index_ddl(target: SQLiteTarget) -> None:
    spec = IndexSpec("orders", ("customer_id", "created_at"), descending=(False, True), include=("amount",))
    assert target.index_ddl(spec) == (
        f'CREATE INDEX IF NOT EXISTS "{spec.name}" ON "orders" ("customer_id", "created_at" DESC, "amount")'
        " /* dbopt-built */"  # the ownership mark, kept in sqlite_master
    )
    unique = IndexSpec("customers", ("email",), unique=True, name="customers_email")
    assert target.index_ddl(unique) == (
        'CREATE UNIQUE INDEX IF NOT EXISTS "customers_email" ON "customers" ("email") /* dbopt-built */'
    )
    with pytest.raises(TargetError, match="INCLUDE"):
        target.index_ddl(IndexSpec("customers", ("email",), include=("region",), unique=True))


def test_create_and_drop_are_idempotent(target: SQLiteTarget) -> None:
    spec = IndexSpec("orders", ("customer_id", "created_at"))

    created, again = target.create_index(spec), target.create_index(spec)

    assert (created.status, created.changed, created.attempts, created.error) == ("created", True, 1, None)
    assert (again.status, again.changed, again.attempts) == ("exists", False, 0)
    assert spec.name in {ix.name for ix in target.indexes(["orders"])}
    assert target.explain("SELECT * FROM orders WHERE customer_id = 5").indexes_used() == {spec.name}

    dropped, gone = target.drop_index("orders", spec.name), target.drop_index("orders", spec.name)

    assert (dropped.status, gone.status) == ("dropped", "absent")
    assert spec.name not in {ix.name for ix in target.indexes(["orders"])}
    wrong_table = target.drop_index("customers", "orders_status")
    assert wrong_table.status == "failed" and "belongs to table 'orders'" in (wrong_table.error or "")
    assert "orders_status" in {ix.name for ix in target.indexes(["orders"])}


def test_create_fails_cleanly_while_another_writer_holds_the_lock(target: SQLiteTarget) -> None:
    writer = sqlite3.connect(target.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO orders (customer_id, status) VALUES (1, 'new')")
    spec = IndexSpec("orders", ("amount",))
    try:
        result = target.create_index(spec, lock_timeout_s=0.2, retries=1)
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert (result.status, result.attempts) == ("failed", 2)
    assert "locked" in (result.error or "")
    assert spec.name not in {ix.name for ix in target.indexes(["orders"])}
    assert target.create_index(spec, lock_timeout_s=0.2, retries=0).status == "created"  # lock free again


def test_failed_builds_leave_nothing_behind(target: SQLiteTarget) -> None:
    bad_column = target.create_index(IndexSpec("orders", ("no_such_column",)))
    assert bad_column.status == "failed" and "no_such_column" in (bad_column.error or "")

    too_slow = target.create_index(IndexSpec("orders", ("created_at", "amount")), statement_timeout_s=0.0)
    assert too_slow.status == "failed" and "statement timeout" in (too_slow.error or "")

    assert {ix.name for ix in target.indexes(["orders"])} == {"orders_status"}
    assert target.integrity_ok()


def test_hostile_identifiers_are_quoted(target: SQLiteTarget) -> None:
    target.execute("CREATE TABLE t (a INTEGER)")
    target.execute(f"CREATE TABLE {target.quote(HOSTILE)} ({target.quote(HOSTILE)} INTEGER, b INTEGER)")
    target.execute(f"INSERT INTO {target.quote(HOSTILE)} VALUES (1, 1), (2, 2), (3, 3)")
    spec = IndexSpec(HOSTILE, (HOSTILE, "b"), descending=(True, False), name=HOSTILE_INDEX)
    query = f"SELECT b FROM {target.quote(HOSTILE)} AS {target.quote('an alias')} WHERE {target.quote(HOSTILE)} = ?"

    assert target.whatif(query, [spec]).scans[0].index == HOSTILE_INDEX
    assert target.create_index(spec).status == "created"
    plan = target.explain(query)
    assert [(s.table, s.access, s.index) for s in plan.scans] == [(HOSTILE, "index_only", HOSTILE_INDEX)]
    info = {ix.name: ix for ix in target.indexes([HOSTILE])}[HOSTILE_INDEX]
    assert (info.table, info.columns, info.descending) == (HOSTILE, (HOSTILE, "b"), (True, False))
    assert target.table_stats([HOSTILE])[HOSTILE].distinct == {HOSTILE: 3.0, "b": 3.0}
    assert target.drop_index(HOSTILE, HOSTILE_INDEX).status == "dropped"
    assert target.execute("SELECT COUNT(*) FROM t") == [(0,)]  # table t is still there


# --- health and safety -----------------------------------------------------------------------


def test_health(target: SQLiteTarget) -> None:
    health = target.health(long_transaction_s=1.0)

    assert health.server_version == sqlite3.sqlite_version
    assert (health.connections_used, health.long_transactions, health.cache_hit_ratio) == (None, None, None)
    assert target.integrity_ok()


def test_backup_verifies_and_restores(target: SQLiteTarget, tmp_path: Path) -> None:
    spec = IndexSpec("orders", ("customer_id",))
    assert target.create_index(spec).status == "created"

    backup = target.backup(["orders"], tmp_path / "backups", undo=[spec])

    assert (backup.kind, backup.verified, backup.tables) == ("sqlite_file", True, ("orders",))
    copy_path = Path(backup.path)
    assert copy_path.parent == tmp_path / "backups" and copy_path.name.startswith("target-")
    assert backup.size_bytes == copy_path.stat().st_size > 0
    copy = sqlite3.connect(copy_path)
    assert copy.execute("SELECT COUNT(*) FROM orders").fetchone() == (ORDERS,)
    copy.executescript(Path(backup.undo_path or "").read_text())  # the undo script drops what dbopt built
    left = copy.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name = ?", [spec.name]).fetchall()
    assert left == []
    copy.close()
    assert target.backup(["orders"], tmp_path / "backups").path != backup.path  # never overwrites
