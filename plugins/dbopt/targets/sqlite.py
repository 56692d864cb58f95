"""SQLite target: a database file, its query log as the workload, `.expert`-style what-if planning.

SQLite has no server, no statement statistics and no usage counters: the workload comes from a
JSON-lines query log (``querylog``), index usage only from plans. Index builds block writers (SQLite
has one writer at a time, WAL or not), so they run in a ``BEGIN IMMEDIATE`` transaction that waits
at most ``lock_timeout_s`` for the write lock and is retried.

URL: ``sqlite:////abs/path/app.db?query_log=/abs/path/app.queries.jsonl`` (the log defaults to
``<database path>.queries.jsonl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TextIO

from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import URL, make_url
from sqlglot.errors import TokenError

from dbopt.targets.base import (
    OWNER_MARK,
    REPLAY_TIMEOUT_S,
    TOOL_MARKER,
    BackupResult,
    DdlResult,
    Dialect,
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
from dbopt.targets.common import mark_redundant, sampled_column_stats, with_retries
from dbopt.targets.querylog import placeholder_count, query_log_of, read_query_log, rotate_query_log
from dbopt.targets.sqlite_hide import pinned, pins, planner_without
from dbopt.targets.sqlite_parse import QueryNames, index_shape, parse_plan, query_names
from dbopt.targets.sqlite_whatif import StatSampler, planner_copy

_PREPARER = sqlite_dialect().identifier_preparer
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class _Locked(Exception):
    """The write lock was not granted within the lock timeout (retryable)."""


class SQLiteTarget(Target):
    dialect: ClassVar[Dialect] = "sqlite"
    workload_source: ClassVar[str] = "querylog"

    def missing_grants(self, tables: list[str] | None) -> list[Any]:
        from dbopt.privileges import missing_sqlite

        return missing_sqlite(self)

    def data_location(self) -> tuple[Path | None, int | None]:
        return self.path.parent, self.path.stat().st_size

    BUSY_TIMEOUT_S: ClassVar[float] = 5.0  # for everything but DDL, which uses its lock_timeout_s

    def __init__(self, url: URL | str, *, sample_rows: int = 20000) -> None:
        url = make_url(url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            raise TargetError(f"SQLite target needs a database file URL like sqlite:////abs/path/app.db, got {url}")
        self.path = Path(url.database)
        self.log_path = query_log_of(self.path, url.query)
        self.sample_rows = sample_rows
        try:
            # the path only: SQLAlchemy URL parameters mean nothing to sqlite3
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.BUSY_TIMEOUT_S)
            self._conn.execute(f"{TOOL_MARKER} SELECT COUNT(*) FROM sqlite_master").fetchall()
        except sqlite3.Error as err:
            raise TargetError(f"cannot open SQLite database {self.path}: {err}; check the path in the URL") from err
        self._sampler = StatSampler(self.execute, self.quote, sample_rows)
        self._dbstat: bool | None = None
        self._reader: sqlite3.Connection | None = None  # replays only; opened on first use
        self._run_lock: TextIO | None = None  # the open, flock-ed lock file while this run holds it

    def close(self) -> None:
        self.release_run_lock()
        if self._reader is not None:
            self._reader.close()
        self._conn.close()

    def quote(self, identifier: str) -> str:
        return _PREPARER.quote_identifier(identifier)

    def server_version(self) -> str:
        return str(self._sql("SELECT sqlite_version()")[0][0])

    def _sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one tagged statement; sqlite3 errors pass through (callers classify them)."""
        return self._conn.execute(f"{TOOL_MARKER} {statement}", params).fetchall()

    def execute(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple]:
        try:
            return self._sql(statement, params or ())
        except sqlite3.Error as err:
            raise TargetError(f"{self.path}: {err} in: {statement[:300]}") from err

    def _read_only(self) -> sqlite3.Connection:
        """A second connection that cannot write: opened with mode=ro, and query_only on top."""
        if self._reader is None:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            try:
                self._reader = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=self.BUSY_TIMEOUT_S)
                self._reader.execute("PRAGMA query_only = ON")
            except sqlite3.Error as err:
                raise TargetError(f"cannot open {self.path} read-only for the benchmark: {err}") from err
        return self._reader

    def replay(self, query: str, *, timeout_s: float = REPLAY_TIMEOUT_S) -> tuple[list[tuple], float]:
        # sqlite3 runs one statement per execute() (several in one string are an error), and this
        # connection cannot write; SQLite has no statement timeout, so a progress handler stops it.
        conn = self._read_only()
        deadline = time.monotonic() + timeout_s
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 10000)
        try:
            start = time.perf_counter()
            rows = conn.execute(f"{TOOL_MARKER} {query}").fetchall()
            return rows, (time.perf_counter() - start) * 1000.0
        except sqlite3.Error as err:
            raise TargetError(f"{self.path}: the replay was refused: {err}; query: {query[:300]}") from err
        finally:
            conn.set_progress_handler(None, 0)

    # --- workload ---------------------------------------------------------------------------
    def workload(self, flt: WorkloadFilter | None = None) -> list[Statement]:
        return read_query_log(self.log_path, flt)

    def reset_workload(self) -> None:
        rotate_query_log(self.log_path)

    # --- plans -------------------------------------------------------------------------------
    def _tables(self) -> dict[str, str]:
        """Lower-cased name → name of every user table."""
        rows = self._sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
        return {name.lower(): name for (name,) in rows}

    def _plan(self, conn: sqlite3.Connection, query: str, names: QueryNames | None, note: str = "") -> Explain:
        try:
            binds = [None] * placeholder_count(query)  # normalized text: plan with NULL for each ?
        except TokenError:
            binds = []
        try:
            rows = conn.execute(f"{TOOL_MARKER} EXPLAIN QUERY PLAN {query}", binds).fetchall()
        except sqlite3.Error as err:
            raise TargetError(f"cannot plan query on {self.path}: {err}{note}; query: {query[:300]}") from err
        return parse_plan(rows, names, self._tables().values())

    def explain(self, query: str) -> Explain:
        return self._plan(self._conn, query, query_names(query))

    def whatif(self, query: str, indexes: Sequence[IndexSpec]) -> Explain:
        names = query_names(query)
        known = self._tables()
        read = {t.lower() for t in names.tables} if names else set()
        # statistics for the tables the query reads; all of them if it reads a view or did not parse
        tables = read | {s.table.lower() for s in indexes} if names and read <= known.keys() else None
        schema = self._sql("SELECT type, name, sql FROM sqlite_master ORDER BY rowid")
        for spec in indexes:
            self._check_columns(spec)
        hypothetical = [(spec, self.index_ddl(spec)) for spec in indexes]
        mem, skipped = planner_copy(schema, hypothetical, self._sampler, self.quote, tables)
        try:
            note = f" (not copied to the planning database: {'; '.join(skipped)})" if skipped else ""
            return self._plan(mem, query, names, note)
        finally:
            mem.close()

    # --- catalog -----------------------------------------------------------------------------
    def _object_size(self, name: str) -> int | None:
        """Bytes of one table's or index's b-tree from the dbstat virtual table (None if not compiled in)."""
        if self._dbstat is None:
            try:
                self._sql("SELECT 1 FROM dbstat WHERE name = 'sqlite_schema' AND aggregate = 1")
                self._dbstat = True
            except sqlite3.OperationalError:
                self._dbstat = False
        if not self._dbstat:
            return None
        rows = self._sql("SELECT pgsize FROM dbstat WHERE name = ? AND aggregate = 1", [name])
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def indexes(self, tables: Iterable[str] | None = None) -> list[IndexInfo]:
        known = self._tables()
        wanted = sorted(known.values()) if tables is None else [known[t.lower()] for t in tables if t.lower() in known]
        definitions = dict(self._sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        found: list[IndexInfo] = []
        for table in wanted:
            for _seq, name, unique, origin, partial in sorted(self._sql(f"PRAGMA index_list({self.quote(table)})")):
                xinfo = self._sql(f"PRAGMA index_xinfo({self.quote(name)})")
                shape = index_shape(xinfo, definitions.get(name))
                found.append(
                    IndexInfo(
                        table=table,
                        name=name,
                        columns=tuple(k.name for k in shape.keys),
                        descending=tuple(k.descending for k in shape.keys),
                        include=shape.aux,
                        unique=bool(unique),
                        primary=origin == "pk",
                        partial=bool(partial),
                        expression=any(k.expression for k in shape.keys),
                        size_bytes=self._object_size(name),
                        definition=definitions.get(name),
                        owned=f"/* {OWNER_MARK} */" in (definitions.get(name) or ""),
                    )
                )
        return mark_redundant(found)

    def table_stats(self, tables: Iterable[str]) -> dict[str, TableStats]:
        known = self._tables()
        out: dict[str, TableStats] = {}
        for requested in tables:
            table = known.get(requested.lower())
            if table is None:
                raise TargetError(f"no table {requested!r} in {self.path}; known tables: {sorted(known.values())}")
            # hidden = 1 are virtual-table hidden columns; generated columns (2, 3) are indexable
            columns = tuple(r[1] for r in self._sql(f"PRAGMA table_xinfo({self.quote(table)})") if r[6] != 1)
            distinct, top = sampled_column_stats(self, table, columns, self.sample_rows)
            out[requested] = TableStats(
                table=table,
                rows=int(self.execute(f"SELECT COUNT(*) FROM {self.quote(table)}")[0][0]),
                size_bytes=self._object_size(table),
                writes=None,  # SQLite counts nothing
                distinct=distinct,
                top_frequency=top,
                columns=columns,
            )
        return out

    # --- changes -----------------------------------------------------------------------------
    def index_ddl(self, spec: IndexSpec) -> str:
        """SQLite has no INCLUDE: include columns become trailing key columns (still covering).

        That would weaken a UNIQUE index's constraint (unique over more columns), so it is refused.
        """
        if spec.unique and spec.include:
            raise TargetError(
                f"index {spec.name}: SQLite has no INCLUDE, and appending {spec.include} to a UNIQUE key "
                "would change what is unique; drop include or unique"
            )
        keys = [self.quote(c) + (" DESC" if spec.is_descending(i) else "") for i, c in enumerate(spec.columns)]
        keys += [self.quote(c) for c in spec.include]
        name = (f"{self.quote(spec.schema)}." if spec.schema else "") + self.quote(spec.name)
        unique = "UNIQUE " if spec.unique else ""
        # sqlite_master keeps the CREATE text as written, comment included: the ownership mark
        return (
            f"CREATE {unique}INDEX IF NOT EXISTS {name} ON {self.quote(spec.table)} ({', '.join(keys)})"
            f" /* {OWNER_MARK} */"
        )

    def _check_columns(self, spec: IndexSpec) -> None:
        """Refuse unknown columns: SQLite would read a double-quoted unknown name as a string constant
        and silently build an index on that constant (its "double-quoted string literal" quirk)."""
        columns = {r[1].lower() for r in self._sql(f"PRAGMA table_xinfo({self.quote(spec.table)})")}
        if not columns:
            raise TargetError(f"index {spec.name}: no table {spec.table!r} in {self.path}")
        missing = [c for c in (*spec.columns, *spec.include) if c.lower() not in columns]
        if missing:
            raise TargetError(f"index {spec.name}: table {spec.table!r} has no column {', '.join(map(repr, missing))}")

    def _index_table(self, name: str) -> str | None:
        """The table an index of that name belongs to; None if there is no such index."""
        rows = self._sql("SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ? COLLATE NOCASE", [name])
        return rows[0][0] if rows else None

    @contextlib.contextmanager
    def _write_transaction(self, lock_timeout_s: float, statement_timeout_s: float) -> Iterator[None]:
        """Hold the write lock for one change: wait at most lock_timeout_s for it, run at most statement_timeout_s."""
        deadline = time.monotonic() + statement_timeout_s
        self._sql(f"PRAGMA busy_timeout = {int(lock_timeout_s * 1000)}")
        # SQLite has no statement timeout: the progress handler interrupts a build past the deadline
        self._conn.set_progress_handler(lambda: time.monotonic() > deadline, 10000)
        try:
            self._sql("BEGIN IMMEDIATE")
            try:
                yield
                self._sql("COMMIT")
            finally:
                if self._conn.in_transaction:
                    self._sql("ROLLBACK")
        except sqlite3.OperationalError as err:
            code = getattr(err, "sqlite_errorcode", 0)
            if code & 0xFF in _BUSY_CODES:
                raise _Locked(str(err)) from err
            if code == sqlite3.SQLITE_INTERRUPT:
                raise TargetError(f"statement timeout: still running after {statement_timeout_s}s") from err
            raise
        finally:
            self._conn.set_progress_handler(None, 0)
            self._sql(f"PRAGMA busy_timeout = {int(self.BUSY_TIMEOUT_S * 1000)}")

    def _change(
        self,
        action: Literal["create", "drop"],
        table: str,
        index: str,
        statement: str,
        is_done: Callable[[], bool],
        *,
        lock_timeout_s: float,
        statement_timeout_s: float,
        retries: int,
    ) -> DdlResult:
        """Run one index change idempotently: ``is_done()`` (checked again under the lock) means no-op."""
        done, changed = ("exists", "created") if action == "create" else ("absent", "dropped")
        start = time.perf_counter()
        attempts = 0  # none when the change was already there

        def result(status: str, error: str | None = None) -> DdlResult:
            ms = (time.perf_counter() - start) * 1000.0
            return DdlResult(action, table, index, status, statement, attempts, ms, error)  # type: ignore[arg-type]

        def attempt(n: int) -> str:
            nonlocal attempts
            attempts = n
            with self._write_transaction(lock_timeout_s, statement_timeout_s):
                if is_done():  # another process may have made the change while we waited
                    return done
                self._sql(statement)
                return changed

        if is_done():
            return result(done)
        try:
            status, _ = with_retries(attempt, (_Locked,), retries)
        except (_Locked, TargetError, sqlite3.Error) as err:
            return result("failed", str(err))  # the transaction was rolled back: nothing changed
        return result(status)

    def create_index(
        self,
        spec: IndexSpec,
        *,
        lock_timeout_s: float = 5.0,
        statement_timeout_s: float = 3600.0,
        retries: int = 3,
    ) -> DdlResult:
        statement = self.index_ddl(spec)
        try:
            self._check_columns(spec)
        except TargetError as err:
            return DdlResult("create", spec.table, spec.name, "failed", statement, error=str(err))
        return self._change(
            "create",
            spec.table,
            spec.name,
            statement,
            lambda: self._index_table(spec.name) is not None,
            lock_timeout_s=lock_timeout_s,
            statement_timeout_s=statement_timeout_s,
            retries=retries,
        )

    def drop_index(self, table: str, name: str, *, lock_timeout_s: float = 5.0, retries: int = 3) -> DdlResult:
        owner = self._index_table(name)
        statement = f"DROP INDEX IF EXISTS {self.quote(name)}"
        if owner is not None and owner.lower() != table.lower():
            error = f"index {name!r} belongs to table {owner!r}, not {table!r}; nothing dropped"
            return DdlResult("drop", table, name, "failed", statement, error=error)
        return self._change(
            "drop",
            table,
            name,
            statement,
            lambda: self._index_table(name) is None,
            lock_timeout_s=lock_timeout_s,
            statement_timeout_s=3600.0,
            retries=retries,
        )

    # --- one run at a time -------------------------------------------------------------------
    def identity(self) -> str:
        return f"sqlite:{self.path.resolve()}"

    @property
    def run_lock_path(self) -> Path:
        """The lock file beside the database; it stays, the lock on it is what counts."""
        return self.path.resolve().with_name(self.path.name + ".dbopt-lock")

    def try_run_lock(self, note: str) -> bool:
        handle = self.run_lock_path.open("a+")
        try:
            # the kernel drops a flock when its holder dies: a crashed run leaves nothing to clean up
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{note} since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n")
        handle.flush()
        self._run_lock = handle
        return True

    def release_run_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.truncate(0)
            self._run_lock.close()  # closing releases the flock
            self._run_lock = None

    def run_lock_holder(self) -> str | None:
        try:
            return self.run_lock_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def index_hiding(
        self, indexes: Sequence[tuple[str, str]], *, lock_timeout_s: float = 5.0, retries: int = 3
    ) -> IndexHiding:
        """Nothing is toggled: the "before" statement pins the plan SQLite chose without ``indexes``
        (``sqlite_hide``); a statement that cannot be pinned raises TargetError."""
        hidden = {name.lower() for _, name in indexes}
        pinned_sql: dict[str, str] = {}

        def before_sql(query: str) -> str:
            if query not in pinned_sql:
                pinned_sql[query] = self._pin_old_plan(query, hidden) if hidden else query
            return pinned_sql[query]

        return IndexHiding("INDEXED BY / NOT INDEXED pins the old plan in the statement", lambda _: None, before_sql)

    def _pin_old_plan(self, query: str, hidden: set[str]) -> str:
        names = query_names(query)
        now = self._plan(self._conn, query, names)
        schema = self._sql("SELECT type, name, sql FROM sqlite_master ORDER BY rowid")
        has_stat1 = self._sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
        stat1 = self._sql("SELECT tbl, idx, stat FROM sqlite_stat1") if has_stat1 else []
        mem = planner_without(schema, stat1, hidden)
        try:
            before = self._plan(mem, query, names)
        finally:
            mem.close()
        table_pins = pins(now, before, hidden)
        if not table_pins:
            return query
        if any("AUTOMATIC" in str(row[-1]) for row in before.raw):
            # NOT INDEXED would also forbid the automatic index the old plan built: not the old plan
            raise TargetError(f"cannot pin the old plan: it uses an automatic index: {query[:200]}")
        rewritten = pinned(query, table_pins)
        check = self._plan(self._conn, rewritten, query_names(rewritten))
        got = {s.table.lower(): s.index for s in check.scans if s.table.lower() in table_pins}
        if got != table_pins:
            raise TargetError(f"pinning the old plan {table_pins} gave {got} instead: {rewritten[:200]}")
        return rewritten

    # --- health and safety -------------------------------------------------------------------
    def health(self, long_transaction_s: float = 60.0) -> HealthFigures:
        # No server: connections, cache, replication, transactions and deadlocks are not observable.
        return HealthFigures(server_version=self.server_version())

    def integrity_ok(self) -> bool:
        """PRAGMA quick_check: the b-trees and records are well formed (no index-content check)."""
        return self._sql("PRAGMA quick_check") == [("ok",)]

    def backup(self, tables: Iterable[str], dest_dir: Path, undo: Sequence[IndexSpec] = ()) -> BackupResult:
        """A copy of the whole database file (SQLite backs up files, not tables) via the online backup API."""
        dest_dir = Path(dest_dir)
        stamp = timestamp()
        names = (dest_dir / f"{self.path.stem}-{stamp}{f'-{n}' if n else ''}.db" for n in range(1000))
        dest = next(p for p in names if not p.exists())
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(dest)) as copy:
                self._conn.backup(copy)
                check = [r[0] for r in copy.execute("PRAGMA integrity_check").fetchall()]
        except (OSError, sqlite3.Error) as err:
            dest.unlink(missing_ok=True)  # only our own partial copy
            raise TargetError(f"backup of {self.path} to {dest} failed: {err}") from err
        undo_path = None
        if undo:
            undo_path = dest.with_suffix(".undo.sql")
            drops = "".join(f"DROP INDEX IF EXISTS {self.quote(s.name)};\n" for s in undo)
            undo_path.write_text(f"-- dbopt undo for {self.path}: drops the indexes dbopt created\n{drops}")
        verified = check == ["ok"]
        return BackupResult(
            kind="sqlite_file",
            path=str(dest),
            verified=verified,
            tables=tuple(tables),
            size_bytes=dest.stat().st_size,
            undo_path=str(undo_path) if undo_path else None,
            detail="whole-file online backup; integrity_check ok"
            if verified
            else f"integrity_check on the copy: {'; '.join(check[:5])}",
        )
