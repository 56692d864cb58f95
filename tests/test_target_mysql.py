"""MySQLTarget against the real MariaDB server (a fresh database per test via ``mysql_url``)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import sqlglot
from sqlalchemy.engine import make_url

from dbopt.targets import open_target
from dbopt.targets.base import IndexSpec, TargetError, WorkloadFilter
from dbopt.targets.mysql import MySQLTarget

# serial: runs alone after the parallel tests (Makefile); it resets server-wide statement statistics
# (performance_schema digests, pg_qualstats) that other tests read their workloads from
pytestmark = pytest.mark.serial

ROWS = 5000


@pytest.fixture
def target(mysql_url: str) -> Iterator[MySQLTarget]:
    with MySQLTarget(make_url(mysql_url)) as t:
        yield t


def _connect(mysql_url: str) -> pymysql.Connection:
    url = make_url(mysql_url)
    return pymysql.connect(host=url.host, port=url.port, user=url.username, database=url.database, autocommit=True)


@pytest.fixture
def app(mysql_url: str) -> Iterator[pymysql.Connection]:
    """The application's own session: an `orders` table with ROWS rows and no secondary index."""
    conn = _connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL, status VARCHAR(16) NOT NULL,"
            " amount DECIMAL(10,2) NOT NULL, note VARCHAR(64))"
        )
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, %s, %s)",
            [(i, i % 500, ("paid", "open", "void")[i % 3], i % 97, f"n{i}") for i in range(1, ROWS + 1)],
        )
    yield conn
    conn.close()


@pytest.fixture
def statement_history(app: pymysql.Connection) -> Iterator[None]:
    """MariaDB fills events_statements_history only while events_statements_current is on as well:
    switch it on for the test (a runtime-only setting) and put the server's value back."""
    consumer = "SELECT ENABLED FROM performance_schema.setup_consumers WHERE NAME = 'events_statements_current'"
    switch = "UPDATE performance_schema.setup_consumers SET ENABLED = %s WHERE NAME = 'events_statements_current'"
    (before,) = _query(app, consumer)[0]
    _query(app, switch, ("YES",))
    try:
        yield
    finally:
        _query(app, switch, (before,))


def _query(conn: pymysql.Connection, sql: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params or None)
        return list(cur.fetchall())


def test_open_target_and_identity(mysql_url: str) -> None:
    with open_target(mysql_url) as t:
        assert isinstance(t, MySQLTarget)
        assert t.dialect == "mysql"
        assert "MariaDB" in t.server_version() and t.is_mariadb
        assert t.quote("a`b") == "`a``b`"
        assert t.execute("SELECT 1 + %s", [1]) == [(2,)]
        assert t.execute("SELECT 'a%'") == [("a%",)]
    with open_target(mysql_url.replace("mysql://", "mariadb+pymysql://")) as t:
        assert t.server_version().startswith("10.")
    with pytest.raises(TargetError, match="names no database"):
        MySQLTarget(make_url("mysql://root@127.0.0.1:3306"))
    with pytest.raises(TargetError, match="cannot connect"):
        MySQLTarget(make_url(mysql_url + "_missing"))


def test_workload_empty_database(target: MySQLTarget) -> None:
    assert target.workload() == []


def test_workload_counts_calls_and_leaves_own_statements_out(
    target: MySQLTarget, app: pymysql.Connection, statement_history: None
) -> None:
    target.reset_workload()
    for customer in (7, 8, 9, 10, 11):
        _query(app, "SELECT id, amount FROM orders WHERE customer_id = %s", (customer,))
    _query(app, "UPDATE orders SET note = 'x' WHERE id = 1")
    _query(app, "SHOW TABLES")
    _query(app, "SET @v = 1")
    # dbopt's own reads of the same table must not show up as workload
    target.table_stats(["orders"])
    target.explain("SELECT id FROM orders WHERE customer_id = 3")
    target.execute("SELECT COUNT(*) FROM orders WHERE status = 'paid'")

    statements = target.workload()
    by_text = {s.query: s for s in statements}
    lookup = next(s for s in statements if "customer_id" in s.query and s.query.startswith("SELECT"))
    assert lookup.calls == 5
    assert lookup.rows == 50 and lookup.rows_examined == 5 * ROWS and lookup.no_index_used == 5
    assert lookup.total_ms > 0 and lookup.mean_ms == pytest.approx(lookup.total_ms / 5, rel=0.01)
    assert lookup.source == "performance_schema" and len(lookup.digest) == 32
    assert lookup.example is not None and re.search(r"customer_id = (7|8|9|10|11)\b", lookup.example)
    assert any(s.query.startswith("UPDATE") for s in statements)
    assert not any(re.match(r"(SHOW|SET|EXPLAIN)", q) for q in by_text), by_text
    assert not any("COUNT" in q or "LIMIT" in q for q in by_text), by_text
    # the normalized digest text can be explained as it is
    assert "orders" in target.explain(lookup.query).full_scans()
    assert target.workload(WorkloadFilter(min_calls=2)) == [lookup]

    target.reset_workload()
    assert target.workload() == []


def test_explain_seq_then_index_and_sort(target: MySQLTarget, app: pymysql.Connection) -> None:
    query = "SELECT * FROM orders o WHERE o.customer_id = 42"
    before = target.explain(query)
    assert before.full_scans() == {"orders"}  # alias resolved to the table
    assert before.est_rows is not None and before.raw["query_block"]
    assert target.create_index(IndexSpec("orders", ("customer_id",), name="ix_cust")).status == "created"

    after = target.explain(query)
    assert after.full_scans() == set() and after.indexes_used() == {"ix_cust"}
    assert after.scans[0].access == "index" and after.est_rows < before.est_rows
    covering = target.explain("SELECT customer_id FROM orders WHERE customer_id BETWEEN 1 AND 3")
    assert covering.scans[0].access == "index_only"
    # normalized text: placeholders are bound to a neutral literal before EXPLAIN
    bound = target.explain("SELECT `id` FROM `orders` WHERE `customer_id` = ? AND `status` IN (...) LIMIT ?")
    assert bound.indexes_used() == {"ix_cust"}

    assert target.explain("SELECT * FROM orders WHERE status = 'paid' ORDER BY amount").sort
    assert not target.explain("SELECT * FROM orders ORDER BY id LIMIT 5").sort
    # MariaDB's JSON breaks on '"' in a literal: the tabular EXPLAIN gives the same reduction
    quoted = target.explain("""SELECT * FROM orders WHERE note = 'a"b' ORDER BY amount""")
    assert quoted.full_scans() == {"orders"} and quoted.sort and isinstance(quoted.raw, list)
    with pytest.raises(TargetError, match="EXPLAIN failed"):
        target.explain("SELECT * FROM no_such_table")


def test_indexes_desc_unique_redundant(target: MySQLTarget, app: pymysql.Connection) -> None:
    _query(app, "CREATE UNIQUE INDEX ux_note ON orders (note)")
    _query(app, "CREATE INDEX ix_cust_amount ON orders (customer_id, amount DESC)")
    _query(app, "CREATE INDEX ix_cust ON orders (customer_id)")
    _query(app, "CREATE INDEX ix_note_prefix ON orders (note(4))")

    found = {ix.name: ix for ix in target.indexes(["orders"])}
    assert set(found) == {"PRIMARY", "ux_note", "ix_cust_amount", "ix_cust", "ix_note_prefix"}
    assert found["PRIMARY"].primary and found["PRIMARY"].unique and found["PRIMARY"].unused is None
    assert found["ux_note"].unique and not found["ux_note"].primary
    wide = found["ix_cust_amount"]
    assert wide.columns == ("customer_id", "amount") and wide.descending == (False, True)
    assert wide.definition == "customer_id, amount DESC"
    assert found["ix_cust"].redundant_with == "ix_cust_amount"
    assert wide.redundant_with is None and found["ux_note"].redundant_with is None
    # a prefix key does not serve full-column lookups: never judged redundant nor covering
    assert found["ix_note_prefix"].expression and found["ix_note_prefix"].definition == "note(4)"
    assert all(ix.size_bytes and ix.size_bytes >= 16384 for ix in found.values())
    assert all(isinstance(ix.unused, bool) for name, ix in found.items() if name != "PRIMARY")
    assert target.indexes([]) == []
    assert {ix.table for ix in target.indexes()} == {"orders"}


def test_table_stats(target: MySQLTarget, app: pymysql.Connection) -> None:
    _query(app, "UPDATE orders SET note = 'y' WHERE id <= 10")
    stats = target.table_stats(["orders"])["orders"]
    assert stats.rows == ROWS
    assert stats.columns == ("id", "customer_id", "status", "amount", "note")
    assert stats.distinct["status"] == 3 and stats.distinct["id"] == ROWS
    assert stats.top_frequency["status"] == pytest.approx(1 / 3, abs=0.01)
    assert stats.size_bytes and stats.size_bytes > 0
    assert stats.writes is not None and stats.writes >= ROWS + 10
    with pytest.raises(TargetError, match="no_such"):
        target.table_stats(["orders", "no_such"])


def test_index_ddl(target: MySQLTarget) -> None:
    spec = IndexSpec("orders", ("customer_id", "amount"), descending=(False, True), include=("note",), unique=True)
    assert target.index_ddl(spec) == (
        f"ALTER TABLE `orders` ADD UNIQUE INDEX `{spec.name}` (`customer_id`, `amount` DESC, `note`)"
        " COMMENT 'dbopt-built', ALGORITHM=INPLACE, LOCK=NONE"
    )


def test_create_and_drop_are_idempotent(target: MySQLTarget, app: pymysql.Connection) -> None:
    spec = IndexSpec("orders", ("status", "amount"))
    first = target.create_index(spec)
    assert (first.status, first.attempts, first.error) == ("created", 1, None) and first.changed
    assert target.create_index(spec).status == "exists"
    assert any(ix.name == spec.name for ix in target.indexes(["orders"]))
    assert target.drop_index("orders", spec.name).status == "dropped"
    assert target.drop_index("orders", spec.name).status == "absent"
    assert target.drop_index("orders", "PRIMARY").status == "failed"
    bad = target.create_index(IndexSpec("orders", ("no_such_column",)))
    assert bad.status == "failed" and "no_such_column" in bad.error


def test_create_index_refused_while_a_young_transaction_touched_the_table(
    target: MySQLTarget, app: pymysql.Connection, mysql_url: str
) -> None:
    assert target.create_index(IndexSpec("orders", ("customer_id",), name="ix_cust")).status == "created"
    holder = _connect(mysql_url)
    try:
        _query(holder, "START TRANSACTION")
        _query(holder, "SELECT id FROM orders LIMIT 1")  # holds a shared metadata lock until COMMIT
        spec = IndexSpec("orders", ("amount",))
        started = time.monotonic()
        result = target.create_index(spec, lock_timeout_s=1, retries=1)
        # refused before any ALTER queued (a queued ALTER would stall every write behind it)
        assert result.status == "failed" and result.attempts == 2, result
        assert "refused: an open transaction has touched 'orders'" in result.error
        assert f"connection {holder.thread_id()}" in result.error and "idle in its transaction" in result.error
        assert time.monotonic() - started < 2  # two checks and the 0.5 s back-off, no lock wait
        dropped = target.drop_index("orders", "ix_cust", retries=0)
        assert dropped.status == "failed" and "refused: an open transaction" in dropped.error
        assert not any(ix.name == spec.name for ix in target.indexes(["orders"]))
    finally:
        _query(holder, "COMMIT")
        holder.close()
    assert _query(app, "SELECT COUNT(*) FROM orders") == [(ROWS,)]
    # the short lock waits were only for the DDL
    assert target.execute("SELECT @@SESSION.lock_wait_timeout = @@GLOBAL.lock_wait_timeout") == [(1,)]
    assert target.create_index(spec).status == "created"


def test_set_index_ignored_round_trip(target: MySQLTarget, app: pymysql.Connection) -> None:
    target.create_index(IndexSpec("orders", ("customer_id",), name="ix_cust"))
    query = "SELECT * FROM orders WHERE customer_id = 5"
    ignored_flag = (
        "SELECT IGNORED FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME = %s"
    )

    assert target.set_index_ignored("orders", "ix_cust", True).endswith("ALTER INDEX `ix_cust` IGNORED")
    assert target.execute(ignored_flag, ["ix_cust"]) == [("YES",)]
    assert target.explain(query).full_scans() == {"orders"}
    target.set_index_ignored("orders", "ix_cust", False)
    assert target.execute(ignored_flag, ["ix_cust"]) == [("NO",)]
    assert target.explain(query).indexes_used() == {"ix_cust"}
    with pytest.raises(TargetError, match="no_such_index"):
        target.set_index_ignored("orders", "no_such_index", True)


def test_hostile_identifiers_are_quoted(target: MySQLTarget, app: pymysql.Connection, tmp_path) -> None:
    table, column, index = 'x"; DROP TABLE orders; --', "a`b", "i`x; DROP TABLE orders"
    target.execute(f"CREATE TABLE {target.quote(table)} (id INT PRIMARY KEY, {target.quote(column)} INT)")
    target.execute(f"INSERT INTO {target.quote(table)} VALUES (1, 1), (2, 2), (3, 2)")

    assert target.create_index(IndexSpec(table, (column,), name=index)).status == "created"
    found = {ix.name: ix for ix in target.indexes([table])}
    assert found[index].columns == (column,)
    stats = target.table_stats([table])[table]
    assert stats.rows == 3 and stats.distinct[column] == 2
    plan = target.explain(f"SELECT * FROM {target.quote(table)} WHERE {target.quote(column)} = 2")
    assert plan.scans[0].table == table
    target.set_index_ignored(table, index, True)
    backup = target.backup([table], tmp_path, undo=[IndexSpec(table, (column,), name=index)])
    assert backup.verified, backup.detail
    assert target.drop_index(table, index).status == "dropped"
    assert _query(app, "SELECT COUNT(*) FROM orders") == [(ROWS,)]


def test_health(target: MySQLTarget, mysql_url: str) -> None:
    figures = target.health(long_transaction_s=3600)
    assert figures.cache_hit_ratio is not None and 0.0 <= figures.cache_hit_ratio <= 1.0
    assert figures.connections_max and 1 <= figures.connections_used <= figures.connections_max
    assert figures.replication_lag_s is None  # the test server is no replica
    assert figures.deadlocks is not None and figures.deadlocks >= 0
    assert figures.server_version == target.server_version()
    other = _connect(mysql_url)
    try:
        _query(other, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
        time.sleep(0.2)  # InnoDB refreshes its INNODB_TRX snapshot at most every 0.1 s
        busy = target.health(long_transaction_s=0)
        assert busy.long_transactions >= 1 and busy.longest_transaction_s >= 0
    finally:
        _query(other, "COMMIT")
        other.close()


def test_backup_writes_verified_ddl_and_undo(target: MySQLTarget, app: pymysql.Connection, tmp_path) -> None:
    spec = IndexSpec("orders", ("customer_id",))
    target.create_index(spec)
    result = target.backup(["orders"], tmp_path / "backups", undo=[spec])
    assert result.kind == "ddl_dump" and result.verified, result.detail
    assert result.tables == ("orders",) and result.size_bytes > 0
    dump = Path(result.path).read_text()
    assert "CREATE TABLE `orders`" in dump and spec.name in dump
    assert sqlglot.parse(dump, read="mysql")
    undo = Path(result.undo_path).read_text()
    assert f"ALTER TABLE `orders` DROP INDEX `{spec.name}`, ALGORITHM=INPLACE, LOCK=NONE;" in undo
    assert _query(app, "SELECT COUNT(*) FROM orders") == [(ROWS,)]
    with pytest.raises(TargetError, match="no_such"):
        target.backup(["no_such"], tmp_path)
