"""MySQL 8 / MariaDB 10.6+ target over one autocommit PyMySQL connection.

Workload from ``performance_schema`` digests, plans from ``EXPLAIN FORMAT=JSON``, online index DDL
(``ALGORITHM=INPLACE, LOCK=NONE``) with a short metadata-lock wait and retries, and instant A/B via
IGNORED (MariaDB) / INVISIBLE (MySQL) indexes. Where the two engines' catalogs differ, the server's
``version()`` decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

import pymysql
import sqlglot
from sqlalchemy.dialects.mysql.base import MySQLDialect
from sqlalchemy.engine import URL
from sqlglot import exp
from sqlglot.errors import SqlglotError

from dbopt.targets.base import (
    OWNER_MARK,
    REPLAY_TIMEOUT_S,
    TOOL_MARKER,
    BackupResult,
    DdlResult,
    Explain,
    HealthFigures,
    IndexHiding,
    IndexInfo,
    IndexSpec,
    Statement,
    TableStats,
    Target,
    TargetError,
    WorkloadFilter,
    timestamp,
)
from dbopt.targets.common import is_local_address, mark_redundant, sampled_column_stats, with_retries
from dbopt.targets.mysql_plan import reduce_plan, reduce_tabular
from dbopt.targets.mysql_text import bind_placeholders, is_workload_sql

PICOSECONDS_PER_MS = 1e9
EXACT_COUNT_BELOW = 100_000  # TABLE_ROWS is an InnoDB estimate; small tables are counted exactly
# ER_LOCK_WAIT_TIMEOUT (also raised for a metadata-lock wait past lock_wait_timeout), ER_LOCK_DEADLOCK
RETRYABLE_ERRNOS = {1205, 1213}
# Writes that arrive while an ALTER waits for the metadata lock queue behind it: the wait (whole
# seconds on MariaDB) is kept at the minimum, and the ALTER retries instead of waiting longer.
MDL_WAIT_S = 1
ER_DUP_KEYNAME = 1061
_WRITE = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(?:insert|update|delete|replace)\b", re.IGNORECASE | re.DOTALL)
# MariaDB's "KEY k (c) [COMMENT '…'] IGNORED" attribute, which sqlglot cannot parse; removed for the check only.
_MARIADB_IGNORED_KEY = re.compile(r"(?<=[)'])[ \t]+IGNORED(?=[ \t]*,?[ \t]*$)", re.MULTILINE)


# A session blocks an ALTER when it holds a metadata lock on the table while idle (only an open
# transaction or LOCK TABLES keeps one between statements) or in a statement that has run for a
# while. INNODB_TRX is only joined to show since when: InnoDB refreshes that view at most every
# 100 ms, so a transaction that has just begun may not be in it yet.
_BLOCKER = "(p.COMMAND = 'Sleep' OR p.TIME >= 1)"
_MDL_SQL = {
    "mariadb": f"""
SELECT DISTINCT m.THREAD_ID, p.USER, p.HOST, p.COMMAND, p.TIME, t.trx_started
FROM information_schema.METADATA_LOCK_INFO m
JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID
LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = m.THREAD_ID
WHERE m.TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND m.TABLE_NAME = %s AND m.THREAD_ID <> CONNECTION_ID()
  AND {_BLOCKER}""",
    "mysql": f"""
SELECT DISTINCT p.ID, p.USER, p.HOST, p.COMMAND, p.TIME, t.trx_started
FROM performance_schema.metadata_locks m
JOIN performance_schema.threads th ON th.THREAD_ID = m.OWNER_THREAD_ID
JOIN information_schema.PROCESSLIST p ON p.ID = th.PROCESSLIST_ID
LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
WHERE m.OBJECT_TYPE = 'TABLE' AND m.OBJECT_SCHEMA = COALESCE(%s, DATABASE()) AND m.OBJECT_NAME = %s
  AND p.ID <> CONNECTION_ID() AND {_BLOCKER}""",
}
# Without a metadata-lock view: every open transaction (as of InnoDB's last refresh of INNODB_TRX).
_OPEN_TRX_SQL = f"""
SELECT p.ID, p.USER, p.HOST, p.COMMAND, p.TIME, t.trx_started
FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
WHERE p.ID <> CONNECTION_ID() AND {_BLOCKER}"""


class _LockBusy(Exception):
    """A DDL attempt gave up waiting for a lock: worth another try after a pause."""


class MySQLTarget(Target):
    dialect = "mysql"
    workload_source = "performance_schema"

    def missing_grants(self, tables: list[str] | None) -> list[Any]:
        from dbopt.privileges import missing_mysql

        return missing_mysql(self, tables)

    def data_location(self) -> tuple[Path | None, int | None]:
        try:
            rows = self.execute("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
            size = self.execute(
                "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            )[0][0]
            size = None if size is None else int(size)
            if not rows or not is_local_address(rows[0][0]):
                return None, size
            return Path(self.execute("SELECT @@datadir")[0][0]), size
        except TargetError:
            return None, None

    _preparer: ClassVar = MySQLDialect(paramstyle="qmark").identifier_preparer  # no "%%": names go out unformatted

    def __init__(self, url: URL) -> None:
        if not url.database:
            raise TargetError(
                f"MySQL URL {url.render_as_string(hide_password=True)} names no database: "
                "use mysql://user@host:3306/DBNAME"
            )
        self.database = url.database
        self._mdl_view: str | None = None  # where metadata locks are read (table_lock_holders)
        self._run_lock: str | None = None
        socket = url.query.get("unix_socket")
        try:
            self._conn = pymysql.connect(
                host=url.host or "localhost",
                port=url.port or 3306,
                user=url.username or "root",
                password=url.password or "",
                database=url.database,
                unix_socket=socket if isinstance(socket, str) else None,
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=10,
            )
        except pymysql.MySQLError as err:
            raise TargetError(
                f"cannot connect to {url.render_as_string(hide_password=True)}: {err}. "
                "Check that the server runs, the database exists and the user may log in."
            ) from err
        # Digests drop comments, so TOOL_MARKER cannot exclude dbopt's own statements from the
        # digest table; not instrumenting this connection (first, before any other statement)
        # keeps them out at the source. Without the privilege, workload()'s text filter still applies.
        with suppress(pymysql.MySQLError):
            self.execute(
                "UPDATE performance_schema.threads SET INSTRUMENTED = 'NO' WHERE PROCESSLIST_ID = CONNECTION_ID()"
            )
        self._version: str = self.execute("SELECT VERSION()")[0][0]
        self.is_mariadb = "mariadb" in self._version.lower()
        if not self.is_mariadb:
            # MySQL 8.3+ may default to JSON format version 2, which mysql_plan does not read;
            # older servers lack the variable and only have version 1.
            with suppress(pymysql.MySQLError):
                self.execute("SET SESSION explain_json_format_version = 1")

    def close(self) -> None:
        if self._conn.open:
            self._conn.close()

    def quote(self, identifier: str) -> str:
        return self._preparer.quote_identifier(identifier)

    def server_version(self) -> str:
        return self._version

    def execute(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self._conn.cursor() as cur:
            # no parameters → no %-formatting, so a literal '%' (LIKE 'a%') needs no escaping
            cur.execute(f"{TOOL_MARKER} {statement}", tuple(params) if params else None)
            return list(cur.fetchall()) if cur.description else []

    @contextmanager
    def _rolled_back(self, read_only: bool = True) -> Iterator[None]:
        """A transaction always rolled back (READ ONLY unless told): for anything running the application's text."""
        self.execute("START TRANSACTION READ ONLY" if read_only else "START TRANSACTION")
        try:
            yield
        finally:
            self.execute("ROLLBACK")

    def replay(self, query: str, *, timeout_s: float = REPLAY_TIMEOUT_S) -> tuple[list[tuple], float]:
        # READ ONLY and always rolled back: a stored function the query calls cannot write. The
        # connection has no CLIENT.MULTI_STATEMENTS (PyMySQL's default), so the server refuses a
        # string holding several statements. MariaDB's max_statement_time is in seconds, MySQL's
        # max_execution_time (SELECT only) in milliseconds.
        limit = (
            f"max_statement_time = {float(timeout_s)}"
            if self.is_mariadb
            else f"max_execution_time = {max(1, round(timeout_s * 1000))}"
        )
        try:
            self.execute(f"SET SESSION {limit}")
            try:
                with self._rolled_back(), self._conn.cursor() as cur:
                    start = time.perf_counter()
                    cur.execute(f"{TOOL_MARKER} {query}")  # no parameters: a '%' stays as written
                    rows = list(cur.fetchall())
                    return rows, (time.perf_counter() - start) * 1000.0
            finally:
                self.execute(f"SET SESSION {limit.split(' = ')[0]} = DEFAULT")
        except pymysql.MySQLError as err:
            raise TargetError(f"{'MariaDB' if self.is_mariadb else 'MySQL'} refused the replay: {err}; "
                              f"query: {query[:300]}") from err  # fmt: skip

    def _table_ref(self, table: str, schema: str | None = None) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    def _dict_rows(self, statement: str) -> list[dict[str, Any]]:
        """Rows keyed by column name, for statements whose columns differ by engine and version."""
        with self._conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"{TOOL_MARKER} {statement}")
            return list(cur.fetchall())

    # --- workload ---------------------------------------------------------------------------
    def _require_performance_schema(self) -> None:
        if not self.execute("SELECT @@performance_schema")[0][0]:
            raise TargetError(
                f"performance_schema is OFF on {self._version}: set performance_schema=ON in the [mysqld] "
                "section of my.cnf and restart the server (it cannot be switched on at runtime)"
            )

    def workload(self, flt: WorkloadFilter | None = None) -> list[Statement]:
        self._require_performance_schema()
        # MySQL 8 keeps the slowest statement of each digest; MariaDB has no such column.
        sample = "NULL, NULL" if self.is_mariadb else "QUERY_SAMPLE_TEXT, QUERY_SAMPLE_TIMER_WAIT"
        rows = self.execute(
            "SELECT DIGEST, DIGEST_TEXT, COUNT_STAR, SUM_TIMER_WAIT, AVG_TIMER_WAIT, SUM_ROWS_SENT,"
            f" SUM_ROWS_AFFECTED, SUM_ROWS_EXAMINED, SUM_NO_INDEX_USED, {sample}"
            " FROM performance_schema.events_statements_summary_by_digest"
            " WHERE SCHEMA_NAME = DATABASE() AND DIGEST IS NOT NULL AND COUNT_STAR > 0"
        )
        examples = self._examples([(r[0], r[9], r[10]) for r in rows if r[9]])
        statements = [
            Statement(
                digest=digest,
                query=text,
                calls=int(calls),
                total_ms=int(total) / PICOSECONDS_PER_MS,
                mean_ms=int(mean) / PICOSECONDS_PER_MS,
                # like pg_stat_statements' rows: retrieved or affected
                rows=int(sent) + int(affected),
                rows_examined=int(examined),
                no_index_used=int(no_index),
                example=examples.get(digest),
                source="performance_schema",
            )
            for digest, text, calls, total, mean, sent, affected, examined, no_index, _, _ in rows
            if text and is_workload_sql(text)
        ]
        return (flt or WorkloadFilter()).apply(statements)

    def _examples(self, samples: list[tuple[str, str, int]]) -> dict[str, str]:
        """digest → the slowest complete concrete statement among ``samples`` and the history tables.

        The history tables keep the last few statements of each live thread. On MariaDB they fill
        only while the consumers events_statements_current and events_statements_history are both
        enabled (``_long`` needs its own consumer). Texts cut at
        performance_schema_max_sql_text_length would not run, so they are skipped.
        """
        limit = int(self.execute("SELECT @@performance_schema_max_sql_text_length")[0][0])
        history = self.execute(
            " UNION ALL ".join(
                f"SELECT DIGEST, SQL_TEXT, TIMER_WAIT FROM performance_schema.{table}"
                " WHERE CURRENT_SCHEMA = DATABASE() AND DIGEST IS NOT NULL AND SQL_TEXT IS NOT NULL"
                for table in ("events_statements_history", "events_statements_history_long")
            )
        )
        best: dict[str, tuple[int, str]] = {}
        for digest, text, wait in [*samples, *history]:
            if TOOL_MARKER in text or len(text) >= limit:
                continue
            if digest not in best or (wait or 0) > best[digest][0]:
                best[digest] = (wait or 0, text)
        return {digest: text for digest, (_, text) in best.items()}

    def reset_workload(self) -> None:
        self._require_performance_schema()
        for table in (
            "events_statements_summary_by_digest",
            "events_statements_history",
            "events_statements_history_long",
        ):
            self.execute(f"TRUNCATE TABLE performance_schema.{table}")

    # --- plans -------------------------------------------------------------------------------
    def explain(self, query: str) -> Explain:
        """``EXPLAIN FORMAT=JSON`` in the common shape.

        Normalized text (``?`` placeholders, a digest's ``(...)``) is bound to the literal ``'1'``
        first (see ``mysql_text.bind_placeholders``), so its plan is an estimate for "some value".
        """
        text = bind_placeholders(query.strip().rstrip(";"))
        try:
            # The optimizer calls a DETERMINISTIC stored function with constant arguments while it
            # plans, and one declared so may still write: READ ONLY, rolled back. EXPLAIN of an
            # UPDATE/DELETE is refused in a READ ONLY transaction; rolling back undoes InnoDB writes.
            with self._rolled_back(read_only=not _WRITE.match(text)):
                document = self.execute(f"EXPLAIN FORMAT=JSON {text}")[0][0]
                try:
                    return reduce_plan(json.loads(document), text)
                except json.JSONDecodeError:
                    # MariaDB 10.x writes '"' inside names and conditions unescaped: read the table form.
                    return reduce_tabular(self._dict_rows(f"EXPLAIN {text}"), text)
        except pymysql.MySQLError as err:
            raise TargetError(
                f"EXPLAIN failed for {text[:200]!r}: {err}. Explain a concrete example of the statement "
                "(digest texts may be truncated or use engine-internal spellings)."
            ) from err

    # --- catalog -----------------------------------------------------------------------------
    def indexes(self, tables: Iterable[str] | None = None) -> list[IndexInfo]:
        where, params = _in_tables("s.TABLE_NAME", tables)
        # MySQL 8 functional key parts have COLUMN_NAME NULL and the expression in EXPRESSION.
        expression = "NULL" if self.is_mariadb else "s.EXPRESSION"
        rows = self.execute(
            "SELECT s.TABLE_NAME, s.INDEX_NAME, s.COLUMN_NAME, s.COLLATION, s.NON_UNIQUE, s.SUB_PART,"
            f" s.INDEX_TYPE, {expression}, s.INDEX_COMMENT"
            " FROM information_schema.STATISTICS s"
            f" WHERE s.TABLE_SCHEMA = DATABASE(){where}"
            " ORDER BY s.TABLE_NAME, s.INDEX_NAME, s.SEQ_IN_INDEX",
            params,
        )
        parts: dict[tuple[str, str], list[tuple]] = {}
        for row in rows:
            parts.setdefault((row[0], row[1]), []).append(row)
        sizes = self._index_sizes()
        unused = self._unused_indexes()
        infos = [self._index_info(table, name, keys, sizes, unused) for (table, name), keys in parts.items()]
        return mark_redundant(infos)

    def _index_info(
        self,
        table: str,
        name: str,
        keys: list[tuple],
        sizes: dict[tuple[str, str], int],
        unused: set[tuple[str, str]] | None,
    ) -> IndexInfo:
        columns, descending, shown = [], [], []
        partial_keys = False  # a prefix key part col(10) or a MySQL 8 functional key part
        for _, _, column, collation, _, sub_part, _, expression, _ in keys:
            key = column if column is not None else f"({expression})"
            columns.append(key)
            descending.append(collation == "D")
            shown.append(key + (f"({sub_part})" if sub_part else "") + (" DESC" if collation == "D" else ""))
            partial_keys |= bool(sub_part) or column is None
        non_unique, index_type = keys[0][4], keys[0][6]
        primary = name == "PRIMARY"
        return IndexInfo(
            table=table,
            name=name,
            columns=tuple(columns),
            descending=tuple(descending),
            unique=not non_unique,
            primary=primary,
            # A prefix key (col(10)), a functional key or a FULLTEXT/SPATIAL index does not serve the
            # lookups a plain B-tree key on the same column does: keep them out of redundancy checks.
            expression=partial_keys or index_type not in ("BTREE", "HASH"),
            size_bytes=sizes.get((table, name)),
            # sys.schema_unused_indexes never lists primary keys, so it cannot judge them
            unused=None if unused is None or primary else (table, name) in unused,
            definition=", ".join(shown),
            schema=self.database,
            owned=(keys[0][8] or "").startswith(OWNER_MARK),
        )

    def _index_sizes(self) -> dict[tuple[str, str], int]:
        try:
            rows = self.execute(
                "SELECT table_name, index_name, stat_value * @@innodb_page_size FROM mysql.innodb_index_stats"
                " WHERE database_name = DATABASE() AND stat_name = 'size'"
            )
        except pymysql.MySQLError:
            return {}  # no privilege on mysql.*, or persistent statistics are off
        return {(t, i): int(size) for t, i, size in rows}

    def _unused_indexes(self) -> set[tuple[str, str]] | None:
        if not self.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'sys'")[0][0]:
            return None
        try:
            rows = self.execute(
                "SELECT object_name, index_name FROM sys.schema_unused_indexes WHERE object_schema = DATABASE()"
            )
        except pymysql.MySQLError:
            return None  # sys present but unreadable (privileges, performance_schema off)
        return {(t, i) for t, i in rows}

    def table_stats(self, tables: Iterable[str]) -> dict[str, TableStats]:
        names = list(tables)
        where, params = _in_tables("TABLE_NAME", names)
        catalog = {
            name: (rows, size)
            for name, rows, size in self.execute(
                "SELECT TABLE_NAME, TABLE_ROWS, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0)"
                f" FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE(){where}",
                params,
            )
        }
        missing = [n for n in names if n not in catalog]
        if missing:
            raise TargetError(f"tables not found in database {self.database!r}: {', '.join(missing)}")
        writes = self._table_writes(names)
        out = {}
        for name in names:
            estimate, size = catalog[name]
            rows = int(estimate or 0)
            if rows < EXACT_COUNT_BELOW:
                rows = int(self.execute(f"SELECT COUNT(*) FROM {self.quote(name)}")[0][0])
            columns = tuple(
                c
                for (c,) in self.execute(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
                    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                    [name],
                )
            )
            distinct, top = sampled_column_stats(self, name, columns)
            out[name] = TableStats(
                table=name,
                rows=rows,
                size_bytes=int(size) if size is not None else None,
                writes=writes.get(name),
                distinct=distinct,
                top_frequency=top,
                columns=columns,
            )
        return out

    def _table_writes(self, names: list[str]) -> dict[str, int]:
        where, params = _in_tables("OBJECT_NAME", names)
        try:
            rows = self.execute(
                "SELECT OBJECT_NAME, COUNT_INSERT + COUNT_UPDATE + COUNT_DELETE"
                " FROM performance_schema.table_io_waits_summary_by_table"
                f" WHERE OBJECT_SCHEMA = DATABASE(){where}",
                params,
            )
        except pymysql.MySQLError:
            return {}  # performance_schema off: writes unknown (None), not zero
        return {name: int(n) for name, n in rows}

    def _index_exists(self, table: str, name: str, schema: str | None = None) -> bool:
        return bool(
            self.execute(
                "SELECT COUNT(*) FROM information_schema.STATISTICS"
                " WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND INDEX_NAME = %s",
                [schema, table, name],
            )[0][0]
        )

    # --- changes -----------------------------------------------------------------------------
    def index_ddl(self, spec: IndexSpec) -> str:
        """``ALTER TABLE … ADD [UNIQUE] INDEX …, ALGORITHM=INPLACE, LOCK=NONE``.

        MySQL has no INCLUDE columns: ``spec.include`` become trailing key columns, which gives the
        same covering reads at the cost of a wider key.
        """
        keys = [self.quote(c) + (" DESC" if spec.is_descending(i) else "") for i, c in enumerate(spec.columns)]
        keys += [self.quote(c) for c in spec.include]
        unique = "UNIQUE " if spec.unique else ""
        return (
            f"ALTER TABLE {self._table_ref(spec.table, spec.schema)} ADD {unique}INDEX {self.quote(spec.name)}"
            f" ({', '.join(keys)}) COMMENT '{OWNER_MARK}', ALGORITHM=INPLACE, LOCK=NONE"
        )

    def _drop_ddl(self, table: str, name: str, schema: str | None = None) -> str:
        return (
            f"ALTER TABLE {self._table_ref(table, schema)} DROP INDEX {self.quote(name)}, ALGORITHM=INPLACE, LOCK=NONE"
        )

    @contextmanager
    def _ddl_session(self, lock_timeout_s: float, statement_timeout_s: float | None = None) -> Iterator[None]:
        """Short lock waits (metadata: lock_wait_timeout; row: innodb_lock_wait_timeout) for one DDL.

        A DDL queued for the metadata lock blocks every later query on the table, so it waits at most
        ``MDL_WAIT_S`` and retries rather than wait longer. Both variables take whole seconds. MariaDB's
        max_statement_time also bounds the build; MySQL has no such limit for DDL.
        """
        wait = min(MDL_WAIT_S, max(1, math.ceil(lock_timeout_s)))
        self.execute(f"SET SESSION lock_wait_timeout = {wait}, SESSION innodb_lock_wait_timeout = {wait}")
        if self.is_mariadb and statement_timeout_s is not None:
            self.execute(f"SET SESSION max_statement_time = {float(statement_timeout_s)}")
        try:
            yield
        finally:
            self.execute("SET SESSION lock_wait_timeout = DEFAULT, SESSION innodb_lock_wait_timeout = DEFAULT")
            if self.is_mariadb and statement_timeout_s is not None:
                self.execute("SET SESSION max_statement_time = DEFAULT")

    def _run_ddl(
        self, statement: str, retries: int, table: str, schema: str | None = None
    ) -> tuple[int, str | None, int | None]:
        """Run one DDL with retries on lock timeouts/deadlocks → (attempts, error text, errno).

        Each attempt first refuses while another session's open transaction has touched the table:
        the ALTER would queue for the metadata lock, and every write after it behind the ALTER.
        """
        attempts = 0

        def attempt(n: int) -> None:
            nonlocal attempts
            attempts = n
            if holders := self.table_lock_holders(table, schema):
                raise _LockBusy(
                    f"refused: an open transaction has touched {table!r}, so the ALTER would wait for its "
                    f"metadata lock while writes queue behind it: {'; '.join(holders)}. Wait until it ends"
                )
            try:
                self.execute(statement)
            except pymysql.MySQLError as err:
                if err.args and err.args[0] in RETRYABLE_ERRNOS:
                    raise _LockBusy(str(err)) from err
                raise

        try:
            with_retries(attempt, (_LockBusy,), retries)
        except _LockBusy as err:
            return attempts, f"gave up after {attempts} attempts: {err}", None
        except pymysql.MySQLError as err:
            return attempts, str(err), err.args[0] if err.args else None
        return attempts, None, None

    def table_lock_holders(self, table: str, schema: str | None = None) -> list[str]:
        """Other sessions whose open transaction holds a metadata lock on the table, or whose statement
        on it has run 1 s or more (a statement in flight for milliseconds is not a blocker)."""
        if self._mdl_view is None:
            self._mdl_view = self._find_mdl_view()
        if self._mdl_view == "innodb_trx":
            sql, params = _OPEN_TRX_SQL, None
        else:
            sql, params = _MDL_SQL[self._mdl_view], [schema, table]
        holders = []
        for conn_id, user, host, command, seconds, trx_started in self.execute(sql, params):
            idle = "idle in its transaction" if command == "Sleep" else f"running for {seconds}s"
            holders.append(f"connection {conn_id} ({user}@{host}, transaction since {trx_started or '?'}, {idle})")
        if holders and self._mdl_view == "innodb_trx":
            holders.append(
                "(which tables they touched is unknown: INSTALL SONAME 'metadata_lock_info' to refuse only for "
                "transactions on this table)"
            )
        return holders

    def _find_mdl_view(self) -> str:
        """MariaDB: the metadata_lock_info plugin; MySQL: performance_schema.metadata_locks; else any
        open transaction counts (InnoDB cannot say which tables a transaction read)."""
        if self.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = 'information_schema' AND TABLE_NAME = 'METADATA_LOCK_INFO'"
        )[0][0]:
            return "mariadb"
        if (
            not self.is_mariadb
            and self.execute(
                "SELECT COUNT(*) FROM performance_schema.setup_instruments"
                " WHERE NAME = 'wait/lock/metadata/sql/mdl' AND ENABLED = 'YES'"
            )[0][0]
        ):
            return "mysql"
        return "innodb_trx"

    def create_index(
        self,
        spec: IndexSpec,
        *,
        lock_timeout_s: float = 5.0,
        statement_timeout_s: float = 3600.0,
        retries: int = 3,
    ) -> DdlResult:
        statement = self.index_ddl(spec)
        if self._index_exists(spec.table, spec.name, spec.schema):
            return DdlResult(action="create", table=spec.table, index=spec.name, status="exists", statement=statement)
        start = time.perf_counter()
        with self._ddl_session(lock_timeout_s, statement_timeout_s):
            attempts, error, errno = self._run_ddl(statement, retries, spec.table, spec.schema)
        if errno == ER_DUP_KEYNAME:  # built by another session between the check and the ALTER
            status, error = "exists", None
        else:
            status = "failed" if error else "created"
        return DdlResult(
            action="create",
            table=spec.table,
            index=spec.name,
            status=status,
            statement=statement,
            attempts=attempts,
            duration_ms=(time.perf_counter() - start) * 1000.0,
            error=error,
        )

    def drop_index(self, table: str, name: str, *, lock_timeout_s: float = 5.0, retries: int = 3) -> DdlResult:
        statement = self._drop_ddl(table, name)
        result = DdlResult(action="drop", table=table, index=name, status="absent", statement=statement)
        if name.upper() == "PRIMARY":
            # Dropping a primary key rebuilds the table and changes its meaning: never automated.
            return dataclasses.replace(result, status="failed", error="dbopt never drops a PRIMARY KEY")
        if not self._index_exists(table, name):
            return result
        start = time.perf_counter()
        with self._ddl_session(lock_timeout_s):
            attempts, error, _ = self._run_ddl(statement, retries, table)
        return dataclasses.replace(
            result,
            status="failed" if error else "dropped",
            attempts=attempts,
            duration_ms=(time.perf_counter() - start) * 1000.0,
            error=error,
        )

    def set_index_ignored(
        self, table: str, name: str, ignored: bool, *, lock_timeout_s: float = 5.0, retries: int = 3
    ) -> str:
        """Hide an index from the optimizer (or show it again) without dropping it; returns the DDL.

        MariaDB 10.6+ ``ALTER INDEX … [NOT] IGNORED``, MySQL 8 ``ALTER INDEX … INVISIBLE|VISIBLE``:
        an instant metadata change, so an A/B comparison or a soft drop costs no rebuild. The index
        is still maintained on writes. Not allowed on a primary key.
        """
        hidden, shown = ("IGNORED", "NOT IGNORED") if self.is_mariadb else ("INVISIBLE", "VISIBLE")
        state = hidden if ignored else shown
        statement = f"ALTER TABLE {self.quote(table)} ALTER INDEX {self.quote(name)} {state}"
        with self._ddl_session(lock_timeout_s):
            _, error, _ = self._run_ddl(statement, retries, table)
        if error:
            raise TargetError(f"{statement} failed: {error}")
        return statement

    def index_hiding(
        self, indexes: Sequence[tuple[str, str]], *, lock_timeout_s: float = 5.0, retries: int = 3
    ) -> IndexHiding | None:
        """IGNORED (MariaDB 10.6+) / INVISIBLE (MySQL 8): an instant change, but still an ALTER that
        waits for the table's metadata lock, so with the builds' short lock wait and retries."""
        major_minor = tuple(int(n) for n in re.findall(r"\d+", self._version)[:2])
        if major_minor < ((10, 6) if self.is_mariadb else (8, 0)):
            return None

        def toggle(visible: bool) -> None:
            failed = []
            for table, name in indexes:  # every one, even after a failure: none may stay hidden by accident
                try:
                    self.set_index_ignored(table, name, not visible, lock_timeout_s=lock_timeout_s, retries=retries)
                except TargetError as err:
                    failed.append(str(err))
            if failed:
                raise TargetError("; ".join(failed))

        word = "IGNORED" if self.is_mariadb else "INVISIBLE"
        wait = max(1, math.ceil(lock_timeout_s))
        return IndexHiding(f"ALTER INDEX … {word} (lock_wait_timeout {wait}s, {retries} retries)", toggle, lambda q: q)

    # --- health and safety -------------------------------------------------------------------
    # --- one run at a time -------------------------------------------------------------------
    def identity(self) -> str:
        host, port = self.execute("SELECT @@hostname, @@port")[0]
        return f"mysql:{host}:{port}/{self.database}"

    def _run_lock_name(self) -> str:
        # GET_LOCK names are server-wide and at most 64 characters
        return "dbopt:" + hashlib.sha1(self.identity().encode()).hexdigest()

    def try_run_lock(self, note: str) -> bool:
        name = self._run_lock_name()
        if self.execute("SELECT GET_LOCK(%s, 0)", [name])[0][0] != 1:
            return False
        self._run_lock = name
        return True

    def release_run_lock(self) -> None:
        if self._run_lock is not None and self._conn.open:
            self.execute("SELECT RELEASE_LOCK(%s)", [self._run_lock])
        self._run_lock = None

    def run_lock_holder(self) -> str | None:
        rows = self.execute(
            "SELECT p.ID, p.USER, p.HOST, p.TIME FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK(%s)",
            [self._run_lock_name()],
        )
        if not rows:
            return None
        conn_id, user, host, seconds = rows[0]
        return f"connection {conn_id} ({user}@{host}, connected for {seconds}s in its current state)"

    def health(self, long_transaction_s: float = 60.0) -> HealthFigures:
        status = {
            name.lower(): value
            for name, value in self.execute(
                "SHOW GLOBAL STATUS WHERE Variable_name IN"
                " ('Innodb_buffer_pool_reads', 'Innodb_buffer_pool_read_requests', 'Threads_connected',"
                " 'Innodb_deadlocks')"
            )
        }
        requests = int(status.get("innodb_buffer_pool_read_requests", 0))
        reads = int(status.get("innodb_buffer_pool_reads", 0))
        long_count, longest = self.execute(
            "SELECT COALESCE(SUM(TIMESTAMPDIFF(SECOND, trx_started, NOW()) >= %s), 0),"
            " COALESCE(MAX(TIMESTAMPDIFF(SECOND, trx_started, NOW())), 0)"
            " FROM information_schema.INNODB_TRX",
            [long_transaction_s],
        )[0]
        return HealthFigures(
            cache_hit_ratio=1.0 - reads / requests if requests else None,
            connections_used=int(status["threads_connected"]) if "threads_connected" in status else None,
            connections_max=int(self.execute("SELECT @@max_connections")[0][0]),
            replication_lag_s=self._replication_lag(),
            long_transactions=int(long_count),
            longest_transaction_s=float(longest),
            deadlocks=self._deadlocks(status),
            server_version=self._version,
        )

    def _replication_lag(self) -> float | None:
        """Seconds behind the primary; None when this server is not a replica (or may not tell)."""
        for statement in ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS"):  # the latter before 10.5 / 8.0.22
            try:
                rows = self._dict_rows(statement)
            except pymysql.MySQLError:
                continue
            if not rows:
                return None
            lag = rows[0].get("Seconds_Behind_Source", rows[0].get("Seconds_Behind_Master"))
            return float(lag) if lag is not None else None
        return None

    def _deadlocks(self, status: dict[str, str]) -> int | None:
        if "innodb_deadlocks" in status:  # MariaDB
            return int(status["innodb_deadlocks"])
        try:  # MySQL 8: the InnoDB metrics counter, enabled by default
            rows = self.execute(
                "SELECT COUNT FROM information_schema.INNODB_METRICS"
                " WHERE NAME = 'lock_deadlocks' AND STATUS = 'enabled'"
            )
        except pymysql.MySQLError:
            return None
        return int(rows[0][0]) if rows else None

    def backup(self, tables: Iterable[str], dest_dir: Path, undo: Sequence[IndexSpec] = ()) -> BackupResult:
        """The tables' ``SHOW CREATE TABLE`` (+ an undo script dropping ``undo``'s indexes).

        DDL only: dbopt changes indexes, never rows, so the schema is what a rollback needs.
        Verified = every table's CREATE TABLE is in the file and parses back with sqlglot.
        """
        names = list(tables)
        creates = {}
        for name in names:
            try:
                creates[name] = self.execute(f"SHOW CREATE TABLE {self.quote(name)}")[0][1]
            except pymysql.MySQLError as err:
                raise TargetError(f"cannot back up table {name!r} of {self.database!r}: {err}") from err
        dest_dir.mkdir(parents=True, exist_ok=True)
        stamp = timestamp()
        path = dest_dir / f"{self.database}_{stamp}.sql"
        header = f"-- dbopt DDL backup of {self.database} ({self._version}) at {stamp}\n"
        path.write_text(header + "".join(f"{ddl};\n\n" for ddl in creates.values()), encoding="utf-8")
        undo_path = None
        if undo:
            undo_path = dest_dir / f"{self.database}_{stamp}_undo.sql"
            drops = "".join(f"{self._drop_ddl(s.table, s.name, s.schema)};\n" for s in undo)
            undo_path.write_text(f"-- dbopt undo: drop the indexes built at {stamp}\n{drops}", encoding="utf-8")
        verified, detail = _verify_ddl_dump(path, creates)
        return BackupResult(
            kind="ddl_dump",
            path=str(path),
            verified=verified,
            tables=tuple(names),
            size_bytes=path.stat().st_size,
            undo_path=str(undo_path) if undo_path else None,
            detail=detail,
        )


def _in_tables(column: str, tables: Iterable[str] | None) -> tuple[str, list[str]]:
    """`` AND column IN (%s, …)`` and its parameters; no condition when tables is None (all tables)."""
    if tables is None:
        return "", []
    names = list(tables)
    if not names:
        return " AND FALSE", []
    return f" AND {column} IN ({', '.join(['%s'] * len(names))})", names


def _verify_ddl_dump(path: Path, creates: dict[str, str]) -> tuple[bool, str]:
    """Read the dump back: each table's CREATE TABLE present verbatim and parsed as CREATE TABLE."""
    text = path.read_text(encoding="utf-8")
    absent = [name for name, ddl in creates.items() if ddl not in text]
    if absent:
        return False, f"CREATE TABLE missing from {path} for: {', '.join(absent)}"
    try:
        parsed = sqlglot.parse(_MARIADB_IGNORED_KEY.sub("", text), read="mysql")
    except SqlglotError as err:
        return False, f"{path} does not parse as MySQL DDL: {err}"
    created = {
        node.this.find(exp.Table).name
        for node in parsed
        if isinstance(node, exp.Create) and node.kind == "TABLE" and node.this.find(exp.Table)
    }
    unparsed = [name for name in creates if name not in created]
    if unparsed:
        return False, f"sqlglot did not read a CREATE TABLE for: {', '.join(unparsed)}"
    return True, f"DDL of {len(creates)} tables; data rows are never modified by dbopt"
