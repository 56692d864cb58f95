"""PostgreSQL target: pg_stat_statements workload, JSON plans, HypoPG what-if, online index builds.

One psycopg 3 connection in autocommit mode (CREATE INDEX CONCURRENTLY cannot run in a transaction).
Every statement carries ``TOOL_MARKER`` and every identifier is composed with ``psycopg.sql``, except
benchmark replays (``timed``): the application's text as is, in a rolled-back READ ONLY transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import RowFactory, namedtuple_row, tuple_row
from sqlalchemy.engine import URL, make_url

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
from dbopt.targets.common import is_local_address, mark_redundant, with_retries
from dbopt.targets.postgres_plan import plan_to_explain

DEFAULT_SCHEMA = "public"
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")

# Errors after which an online DDL is worth another try (and may have left an INVALID index).
_RETRYABLE = (errors.LockNotAvailable, errors.QueryCanceled, errors.DeadlockDetected)

# Only statements the planner can explain are workload; BEGIN/SET/SHOW/EXPLAIN/DDL are not. An SQL-level
# "PREPARE name [(types)] AS <statement>" is how pg_stat_statements shows what EXECUTE ran.
_PLANNABLE = re.compile(
    r"^\s*(?:(?:/\*.*?\*/|--[^\n]*)\s*)*(?:prepare\s+\S+?\s*(?:\([^)]*\))?\s+as\s+)?"
    r"(?:select|insert|update|delete|with|merge|values|table)\b",
    re.IGNORECASE | re.DOTALL,
)
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_PLACEHOLDER = re.compile(r"\$(\d+)")
# A typed literal whose value is a parameter ("interval $2", as pg_stat_statements normalizes
# "interval '1 day'") does not parse in PREPARE or EXPLAIN; the cast "$2::interval" means the same.
_TYPED_PARAMETER = re.compile(
    r"\b(interval|timestamptz|timestamp(?:\s+with(?:out)?\s+time\s+zone)?|date|time|uuid|json|jsonb)\s+\$(\d+)\b",
    re.IGNORECASE,
)


def _typed_parameters(query: str) -> str:
    return _TYPED_PARAMETER.sub(lambda m: f"${m[2]}::{m[1]}", query)


_WORKLOAD_SQL = """
SELECT s.queryid, min(s.query), sum(s.calls)::bigint, sum(s.total_exec_time),
       sum(s.total_exec_time) / nullif(sum(s.calls), 0),
       -- pooled (population) stddev over the per-user rows of one queryid
       sqrt(greatest(sum(s.calls * (s.stddev_exec_time ^ 2 + s.mean_exec_time ^ 2)) / nullif(sum(s.calls), 0)
                     - (sum(s.total_exec_time) / nullif(sum(s.calls), 0)) ^ 2, 0)),
       sum(s.rows)::bigint, sum(s.shared_blks_hit)::bigint, sum(s.shared_blks_read)::bigint
FROM {view} s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.toplevel AND s.queryid IS NOT NULL
GROUP BY s.queryid
"""

_INDEXES_SQL = """
SELECT n.nspname AS schema, t.relname AS table, c.relname AS name, i.indisunique AS unique,
       i.indisprimary AS primary, i.indisvalid AS valid, i.indpred IS NOT NULL AS partial,
       i.indexprs IS NOT NULL AS expression, i.indnkeyatts AS nkeys, i.indoption::int2[] AS options,
       ARRAY(SELECT coalesce(a.attname::text, pg_get_indexdef(i.indexrelid, k.ord::int, true))
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
             ORDER BY k.ord) AS columns,
       pg_relation_size(c.oid) AS size, s.idx_scan AS scans, pg_get_indexdef(c.oid) AS definition,
       coalesce(obj_description(c.oid, 'pg_class'), '') LIKE %(mark)s AS owned
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
WHERE n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND (%(all)s OR (n.nspname, t.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[])))
ORDER BY n.nspname, t.relname, c.relname
"""

_TABLE_SQL = """
SELECT c.oid, c.reltuples, pg_total_relation_size(c.oid),
       s.n_tup_ins + s.n_tup_upd + s.n_tup_del,
       s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'm', 'f')
"""

# The partitions of a partitioned table (one row with NULLs when it has none yet); empty when the
# table is not partitioned.
_PARTITIONS_SQL = """
SELECT c.relkind = 'p', pn.nspname, pc.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits i ON i.inhparent = c.oid
LEFT JOIN pg_class pc ON pc.oid = i.inhrelid
LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'p'
ORDER BY pn.nspname, pc.relname
"""

_PARTITIONED_INDEX_SQL = """
SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'I'
"""

_ATTACHED_SQL = """
SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""

# The relation a bare name means under the session's search_path (as the application's statements see it).
_SEARCH_PATH_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(quote_ident(%s))
"""

_VIEW_SQL = """
SELECT pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'v'
"""

_COLUMN_STATS_SQL = """
SELECT a.attname, st.n_distinct, st.most_common_freqs[1], st.avg_width
FROM pg_attribute a
LEFT JOIN LATERAL (SELECT * FROM pg_stats p
                   WHERE p.schemaname = %s AND p.tablename = %s AND p.attname = a.attname
                   ORDER BY p.inherited DESC LIMIT 1) st ON true
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_INDEX_STATE_SQL = """
SELECT t.relname, i.indisvalid,
       (SELECT p.pid FROM pg_stat_progress_create_index p
        WHERE p.index_relid = c.oid AND p.pid <> pg_backend_pid() LIMIT 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid
WHERE n.nspname = %s AND c.relname = %s
"""

# A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32 bits), objsubid 1.
_RUN_LOCK_HOLDER_SQL = """
SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid::bigint = %s AND l.objid::bigint = %s
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

_HEALTH_SQL = """
SELECT d.blks_hit AS hit, d.blks_read AS read, d.deadlocks,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
       current_setting('max_connections')::int AS max_connections,
       pg_is_in_recovery() AS standby,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_lag,
       (SELECT extract(epoch FROM max(replay_lag))::float8 FROM pg_stat_replication) AS replicas_lag,
       (SELECT count(*) FROM pg_stat_activity
        WHERE datid = d.datid AND pid <> pg_backend_pid() AND xact_start < now() - make_interval(secs => %s))
         AS long_transactions,
       (SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8 FROM pg_stat_activity
        WHERE datid = d.datid AND pid <> pg_backend_pid() AND xact_start IS NOT NULL) AS longest,
       current_setting('server_version') AS version
FROM pg_stat_database d WHERE d.datname = current_database()
"""

_COLUMNS_DDL_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       a.attidentity, a.attgenerated
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""

# Foreign keys last: they are the constraints that depend on other tables.
_CONSTRAINTS_DDL_SQL = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %s AND contype IN ('p', 'u', 'c', 'x', 'f') ORDER BY contype = 'f', conname
"""

_PLAIN_INDEXES_DDL_SQL = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY i.indexrelid
"""


@dataclass(frozen=True)
class _IndexState:
    table: str | None  # None: the name belongs to a relation that is not an index
    valid: bool
    builder_pid: int | None  # another backend is building it right now


def split_table(table: str, schema: str | None = None) -> tuple[str, str]:
    """(schema, table) from "table", "schema.table", or an explicit schema (the name is then taken whole)."""
    if schema:
        return schema, table
    head, dot, tail = table.partition(".")
    return (head, tail) if dot else (DEFAULT_SCHEMA, table)


def _connect_params(url: URL) -> dict[str, Any]:
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    for key, value in url.query.items():
        params[key] = value[-1] if isinstance(value, tuple) else value
    params.setdefault("application_name", "dbopt")
    return {k: v for k, v in params.items() if v is not None}


class PostgresTarget(Target):
    dialect: ClassVar[Dialect] = "postgres"
    workload_source: ClassVar[str] = "pg_stat_statements"

    def missing_grants(self, tables: list[str] | None) -> list[Any]:
        from dbopt.privileges import missing_postgres

        return missing_postgres(self, tables)

    def data_location(self) -> tuple[Path | None, int | None]:
        try:
            address, size = self.execute("SELECT host(inet_server_addr()), pg_database_size(current_database())")[0]
            if not is_local_address(address):
                return None, size
            # needs superuser or pg_read_all_settings; without it the configured cap applies
            return Path(self.execute("SELECT current_setting('data_directory')")[0][0]), size
        except TargetError:
            return None, None

    def __init__(self, url: URL | str) -> None:
        self._params = _connect_params(make_url(url))
        try:
            # prepare_threshold=None: psycopg would otherwise switch a query run 5+ times to a
            # server-side prepared (possibly generic) plan, which skews timed() measurements.
            self._conn = psycopg.connect(**self._params, autocommit=True, prepare_threshold=None)
        except psycopg.Error as err:
            where = f"{self._params.get('host', 'localhost')}:{self._params.get('port', 5432)}"
            raise TargetError(f"cannot connect to PostgreSQL at {where}: {err}".strip()) from err

    # --- plumbing ----------------------------------------------------------------------------
    def _run(
        self,
        statement: str | sql.Composable,
        params: Sequence[Any] | dict[str, Any] | None = None,
        row_factory: RowFactory | None = None,
    ) -> list:
        """Send one tagged statement; raw psycopg errors (callers classify them)."""
        if isinstance(statement, str):
            query: str | sql.Composable = f"{TOOL_MARKER} {statement}"
        else:
            query = sql.Composed([sql.SQL(TOOL_MARKER + " "), statement])
        with self._conn.cursor(row_factory=row_factory or tuple_row) as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def _run_app(self, statement: sql.Composable) -> list:
        """Send a statement that embeds the application's text: tagged, and through the extended
        protocol (binary results) so that the server refuses a string holding several statements —
        through the simple protocol ``EXPLAIN SELECT 1; COMMIT; DELETE …`` would run the DELETE."""
        with self._conn.cursor() as cur:
            cur.execute(sql.Composed([sql.SQL(TOOL_MARKER + " "), statement]), binary=True)
            return cur.fetchall() if cur.description is not None else []

    def _text(self, composed: sql.Composable) -> str:
        return composed.as_string(self._conn)

    def _extension_schema(self, name: str) -> str | None:
        rows = self._run(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = %s",
            [name],
        )
        return rows[0][0] if rows else None

    def _flush_own_stats(self) -> None:
        # PG15 publishes this session's counters (idx_scan, n_tup_*) only about once a second;
        # forcing the flush makes catalog reads see the tool's own recent activity too.
        self._run("SELECT pg_stat_force_next_flush()")

    def close(self) -> None:
        self._conn.close()

    def quote(self, identifier: str) -> str:
        return sql.Identifier(identifier).as_string(self._conn)

    def server_version(self) -> str:
        return self._run("SHOW server_version")[0][0]

    def execute(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple]:
        try:
            return self._run(statement, params)
        except psycopg.Error as err:
            raise TargetError(
                f"PostgreSQL rejected the statement: {str(err).strip()}; statement: {statement[:300]}"
            ) from err

    @contextmanager
    def _read_only(self) -> Iterator[None]:
        """A READ ONLY transaction, always rolled back: for anything that runs the application's text."""
        self._run("BEGIN TRANSACTION READ ONLY")
        try:
            yield
        finally:
            if self._conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                self._run("ROLLBACK")

    def replay(self, query: str, *, timeout_s: float = REPLAY_TIMEOUT_S) -> tuple[list[tuple], float]:
        # READ ONLY and always rolled back: a function the query calls cannot write, nextval() and
        # FOR UPDATE fail. binary=True makes psycopg use the extended protocol even without
        # parameters (it sends a parameterless query through the simple protocol otherwise), and
        # there the server refuses a string holding several statements.
        # Untagged: pg_stat_statements keeps the first text it sees for a queryid (comments are not
        # part of the id), so a tagged replay could hide the application's own statement from the
        # next extraction. The replayed queries are the application's, and count as its workload.
        try:
            with self._read_only(), self._conn.cursor() as cur:
                self._run("SELECT set_config('statement_timeout', %s, true)", [f"{max(1, round(timeout_s * 1000))}"])
                start = time.perf_counter()
                cur.execute(query, binary=True)  # type: ignore[arg-type]  # the application's text, as is
                rows = cur.fetchall() if cur.description is not None else []
                return rows, (time.perf_counter() - start) * 1000.0
        except psycopg.Error as err:
            raise TargetError(f"PostgreSQL refused the replay: {str(err).strip()}; query: {query[:300]}") from err

    # --- workload ----------------------------------------------------------------------------
    def _stat_statements_schema(self) -> str:
        schema = self._extension_schema("pg_stat_statements")
        if schema is None:
            raise TargetError(
                f"pg_stat_statements is not installed in database {self._params.get('dbname')!r}: run "
                "CREATE EXTENSION pg_stat_statements; add it to shared_preload_libraries (then restart)"
            )
        return schema

    def workload(self, flt: WorkloadFilter | None = None) -> list[Statement]:
        view = sql.Identifier(self._stat_statements_schema(), "pg_stat_statements")
        query = sql.SQL(_WORKLOAD_SQL).format(view=view)
        try:
            rows = self._run(query)
        except errors.ObjectNotInPrerequisiteState as err:
            raise TargetError(f"{err}: add pg_stat_statements to shared_preload_libraries and restart") from err
        statements = [
            Statement(
                digest=str(queryid),
                query=text,
                calls=calls,
                total_ms=total,
                mean_ms=mean,
                stddev_ms=stddev,
                rows=nrows,
                shared_blks_hit=hit,
                shared_blks_read=read,
                source="pg_stat_statements",
            )
            for queryid, text, calls, total, mean, stddev, nrows, hit, read in rows
            if calls and text and _PLANNABLE.match(text)
        ]
        return self._with_examples((flt or WorkloadFilter()).apply(statements))

    def _with_examples(self, statements: list[Statement]) -> list[Statement]:
        """Concrete examples (real constants) from pg_qualstats, where installed: what a benchmark replays.

        pg_stat_statements keeps only the normalized text; pg_qualstats samples one executed query
        with its constants per queryid (``pg_qualstats_example_query``).
        """
        schema = self._extension_schema("pg_qualstats")
        if schema is None or not statements:
            return statements
        func = sql.Identifier(schema, "pg_qualstats_example_query")
        ids = [int(s.digest) for s in statements]
        rows = self._run(sql.SQL("SELECT q, {}(q) FROM unnest(%s::bigint[]) AS q").format(func), [ids])
        examples = {str(q): text.strip().rstrip(";") for q, text in rows if text}
        return [dataclasses.replace(s, example=examples.get(s.digest)) for s in statements]

    def reset_workload(self) -> None:
        func = sql.Identifier(self._stat_statements_schema(), "pg_stat_statements_reset")
        current_db = sql.SQL("(SELECT oid FROM pg_database WHERE datname = current_database())")
        # userid 0 / queryid 0 = every user and statement, but only this database
        self._run(sql.SQL("SELECT {}(0, {}, 0)").format(func, current_db))
        qualstats = self._extension_schema("pg_qualstats")
        if qualstats is not None:
            self._run(sql.SQL("SELECT {}()").format(sql.Identifier(qualstats, "pg_qualstats_reset")))

    # --- plans -------------------------------------------------------------------------------
    def explain(self, query: str) -> Explain:
        text = query.strip().rstrip(";").strip()
        placeholders = [int(n) for n in _PLACEHOLDER.findall(_STRING_LITERAL.sub("''", text))]
        try:
            if placeholders:
                raw = self._explain_generic(text, max(placeholders))
            else:
                # read-only: planning folds IMMUTABLE functions, and one declared so may still write
                with self._read_only():
                    raw = self._run_app(sql.SQL("EXPLAIN (FORMAT JSON) ") + sql.SQL(text))[0][0]
        except psycopg.Error as err:
            raise TargetError(f"cannot EXPLAIN {text[:200]!r}: {err}".strip()) from err
        return plan_to_explain(raw)

    @functools.cached_property
    def _version_num(self) -> int:
        return int(self._run("SHOW server_version_num")[0][0])

    def _explain_generic(self, query: str, nparams: int) -> Any:
        """Plan a normalized ($n) query without values: ``EXPLAIN (GENERIC_PLAN)`` on PostgreSQL 16+;
        before that as Dexter does, a forced generic plan of a PREPARE executed with NULL parameters.
        EXPLAIN without ANALYZE: the statement is never run."""
        query = _typed_parameters(query)
        if self._version_num >= 160000:
            # $n without values cannot go through the extended protocol: one statement, checked here
            from dbopt.replay_safety import split_queries

            if len(split_queries(query, "postgres")) != 1:
                raise TargetError(f"not one statement, not planned: {query[:200]!r}")
            with self._read_only():
                return self._run(sql.SQL("EXPLAIN (GENERIC_PLAN, FORMAT JSON) ") + sql.SQL(query))[0][0]
        name = sql.Identifier(f"dbopt_{uuid.uuid4().hex[:12]}")
        nulls = sql.SQL(", ").join([sql.NULL] * nparams)
        prepared = False
        # BEGIN and SET share a round trip (our own text); the application's text goes alone through
        # the extended protocol (``_run_app``), where the server refuses a string of several statements
        try:
            self._run("BEGIN TRANSACTION READ ONLY; SET LOCAL plan_cache_mode = force_generic_plan")
            self._run_app(sql.SQL("PREPARE {} AS ").format(name) + sql.SQL(query))
            prepared = True
            return self._run(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}({})").format(name, nulls))[0][0]
        finally:
            # PREPARE is not transactional: deallocate exactly this statement (others may be in use)
            end = sql.SQL("ROLLBACK; DEALLOCATE {}").format(name) if prepared else sql.SQL("ROLLBACK")
            self._run(end)

    @functools.cached_property
    def _hypopg_schema(self) -> str | None:
        return self._extension_schema("hypopg")

    def index_hiding(
        self, indexes: Sequence[tuple[str, str]], *, lock_timeout_s: float = 5.0, retries: int = 3
    ) -> IndexHiding | None:
        """HypoPG 1.4+ ``hypopg_hide_index``: hidden from this session's planner only, no lock taken.
        Older HypoPG (1.3.1 here) has no such function: None, and before/after are separate phases."""
        schema = self._extension_schema("hypopg")
        if schema is None or not self._run("SELECT to_regproc(%s)", [f"{schema}.hypopg_hide_index"])[0][0]:
            return None
        oids = [
            self._run(
                "SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s AND i.indrelid = to_regclass(%s)",
                [name, table],
            )[0][0]
            for table, name in indexes
        ]

        def toggle(visible: bool) -> None:
            function = sql.Identifier(schema, "hypopg_unhide_index" if visible else "hypopg_hide_index")
            for oid in oids:
                self._run(sql.SQL("SELECT {}({})").format(function, sql.Literal(oid)))

        return IndexHiding("HypoPG hypopg_hide_index (this session's planner only)", toggle, lambda q: q)

    def whatif(self, query: str, indexes: Sequence[IndexSpec]) -> Explain | None:
        schema = self._hypopg_schema  # looked up once: the advisor plans thousands of what-ifs
        if schema is None:
            return None
        create = sql.Identifier(schema, "hypopg_create_index")
        drop = sql.Identifier(schema, "hypopg_drop_index")
        created: list[int] = []
        spec_names: dict[str, str] = {}
        try:
            for spec in indexes:
                ddl = self._text(self._index_sql(spec, online=False))
                try:
                    oid, hypo_name = self._run(sql.SQL("SELECT * FROM {}({})").format(create, sql.Literal(ddl)))[0]
                except psycopg.Error as err:
                    raise TargetError(f"HypoPG rejected index {spec.name!r} ({ddl}): {err}".strip()) from err
                created.append(oid)
                spec_names[hypo_name] = spec.name
            plan = self.explain(query)
        finally:
            if created:
                self._run(sql.SQL("SELECT {}(o) FROM unnest(%s::oid[]) AS o").format(drop), [created])
        scans = tuple(dataclasses.replace(s, index=spec_names.get(s.index or "", s.index)) for s in plan.scans)
        return dataclasses.replace(plan, scans=scans)

    # --- catalog -----------------------------------------------------------------------------
    def indexes(self, tables: Iterable[str] | None = None) -> list[IndexInfo]:
        pairs = [split_table(t) for t in tables] if tables is not None else []
        self._flush_own_stats()
        rows = self._run(
            _INDEXES_SQL,
            {
                "system": list(_SYSTEM_SCHEMAS),
                "all": tables is None,
                "schemas": [s for s, _ in pairs],
                "names": [t for _, t in pairs],
                "mark": OWNER_MARK + "%",
            },
            namedtuple_row,
        )
        by_schema: dict[str, list[IndexInfo]] = {}
        for r in rows:
            by_schema.setdefault(r.schema, []).append(
                IndexInfo(
                    table=r.table,
                    name=r.name,
                    columns=tuple(r.columns[: r.nkeys]),
                    descending=tuple(bool(opt & 1) for opt in r.options[: r.nkeys]),  # 1 = INDOPTION_DESC
                    include=tuple(r.columns[r.nkeys :]),
                    unique=r.unique,
                    primary=r.primary,
                    valid=r.valid,
                    partial=r.partial,
                    expression=r.expression,
                    size_bytes=r.size,
                    scans=r.scans,
                    unused=None if r.scans is None else r.scans == 0 and not (r.unique or r.primary),
                    definition=r.definition,
                    schema=r.schema,
                    owned=r.owned,
                )
            )
        # redundancy is judged per schema: IndexInfo.table is the bare table name
        return [ix for group in by_schema.values() for ix in mark_redundant(group)]

    def _find_table(self, table: str) -> tuple[str, str, tuple]:
        """(schema, name, row of _TABLE_SQL); a clear error for a table that does not exist."""
        schema, name = split_table(table)
        rows = self._run(_TABLE_SQL, [schema, name])
        if not rows:
            raise TargetError(f"table {table!r} not found (looked for {name!r} in schema {schema!r})")
        return schema, name, rows[0]

    def on_search_path(self, names: Iterable[str]) -> dict[str, str]:
        out = {}
        for name in names:
            if "." not in name:
                rows = self._run(_SEARCH_PATH_SQL, [name])
                if rows and rows[0][0] != DEFAULT_SCHEMA:
                    out[name] = f"{rows[0][0]}.{rows[0][1]}"
        return out

    def view_definitions(self, names: Iterable[str]) -> dict[str, str]:
        out = {}
        for name in names:
            rows = self._run(_VIEW_SQL, split_table(name))
            if rows:
                out[name] = rows[0][0]
        return out

    def table_stats(self, tables: Iterable[str]) -> dict[str, TableStats]:
        self._flush_own_stats()
        out: dict[str, TableStats] = {}
        for table in tables:
            schema, name, (oid, reltuples, size, writes, never_analyzed) = self._find_table(table)
            if never_analyzed:
                self._run(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, name)))
                schema, name, (oid, reltuples, size, writes, _) = self._find_table(table)
            rows = max(int(reltuples), 0)
            distinct: dict[str, float | None] = {}
            top: dict[str, float | None] = {}
            widths: dict[str, float | None] = {}
            for column, n_distinct, top_freq, width in self._run(_COLUMN_STATS_SQL, [schema, name, oid]):
                widths[column] = width
                # negative n_distinct is a fraction of the row count (distinct values grow with the table)
                distinct[column] = (
                    None if n_distinct is None else (-n_distinct * rows if n_distinct < 0 else n_distinct)
                )
                top[column] = top_freq
            out[table] = TableStats(table, rows, size, writes, distinct, top, tuple(distinct), widths)
        return out

    # --- changes -----------------------------------------------------------------------------
    def _index_sql(self, spec: IndexSpec, *, online: bool, only: bool = False) -> sql.Composed:
        schema, table = split_table(spec.table, spec.schema)
        keys = [
            sql.SQL("{} DESC").format(sql.Identifier(c)) if spec.is_descending(i) else sql.Identifier(c)
            for i, c in enumerate(spec.columns)
        ]
        parts = [
            sql.SQL("CREATE UNIQUE INDEX" if spec.unique else "CREATE INDEX"),
            sql.SQL("CONCURRENTLY IF NOT EXISTS") if online else sql.SQL("IF NOT EXISTS") if only else None,
            sql.SQL("{} ON ONLY {} ({})" if only else "{} ON {} ({})").format(
                sql.Identifier(spec.name), sql.Identifier(schema, table), sql.SQL(", ").join(keys)
            ),
            sql.SQL("INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, spec.include)))
            if spec.include
            else None,
        ]
        return sql.SQL(" ").join([p for p in parts if p is not None])

    def index_ddl(self, spec: IndexSpec) -> str:
        if (partitions := self._partitions(spec)) is not None:
            return ";\n".join(self._text(step) for *_, step in self._partitioned_steps(spec, partitions))
        return self._text(self._index_sql(spec, online=True))

    # --- partitioned tables: CREATE INDEX CONCURRENTLY is refused on the parent ----------------
    def _partitions(self, spec: IndexSpec) -> list[tuple[str, str]] | None:
        """(schema, name) of each partition when ``spec``'s table is partitioned, else None."""
        schema, table = split_table(spec.table, spec.schema)
        rows = self._run(_PARTITIONS_SQL, [schema, table])
        if not rows or not rows[0][0]:
            return None
        return [(s, t) for _, s, t in rows if t is not None]

    def _partition_spec(self, spec: IndexSpec, schema: str, table: str) -> IndexSpec:
        """The partition's own index: same keys, a deterministic name of its own."""
        part = IndexSpec(f"{schema}.{table}", spec.columns, spec.descending, spec.include, spec.unique)
        return dataclasses.replace(part, name=f"{spec.name[:40]}_{part.name[-8:]}")

    def _partitioned_steps(
        self, spec: IndexSpec, partitions: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str, sql.Composed]]:
        """The online way PostgreSQL allows: the parent's index ON ONLY the parent (invalid, no data),
        each partition's index CONCURRENTLY, then ATTACH each (the parent's turns valid with the last).
        Steps are (kind, partition index name or "", statement), kind "parent" | "build" | "attach"."""
        schema, _ = split_table(spec.table, spec.schema)
        steps = [("parent", "", self._index_sql(spec, online=False, only=True))]
        for p_schema, p_table in partitions:
            child = self._partition_spec(spec, p_schema, p_table)
            steps.append(("build", child.name, self._index_sql(child, online=True)))
            steps.append(("attach", child.name, self._attach_sql(schema, spec.name, p_schema, child.name)))
        return steps

    @staticmethod
    def _attach_sql(schema: str, parent: str, p_schema: str, child: str) -> sql.Composed:
        return sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
            sql.Identifier(schema, parent), sql.Identifier(p_schema, child)
        )

    def _create_partitioned_index(
        self, spec: IndexSpec, partitions: Sequence[tuple[str, str]], lock_timeout_s: float, retries: int
    ) -> DdlResult:
        """Build on a partitioned table without blocking writes; rerunnable after a partial failure.

        A partition that already has an unattached index with the same definition gets that one
        attached instead of a duplicate.
        """
        schema, _ = split_table(spec.table, spec.schema)
        statement = self.index_ddl(spec)
        start, attempts_total = time.perf_counter(), 0

        def result(status: Any, error: str | None = None) -> DdlResult:
            elapsed = (time.perf_counter() - start) * 1000.0
            return DdlResult("create", spec.table, spec.name, status, statement, attempts_total, elapsed, error)

        def run(step: sql.Composed, what: str) -> str | None:
            nonlocal attempts_total
            attempts, err = self._online_ddl(step, retries)
            attempts_total += attempts
            return None if err is None else f"{what}: {err}".strip()

        state = self._index_state(schema, spec.name)
        if state is not None and state.valid:
            return result("exists")
        self._set_timeouts(lock_timeout_s)  # no statement timeout: each partition build is its own statement
        try:
            if error := run(self._index_sql(spec, online=False, only=True), f"index on only {spec.table}"):
                return result("failed", error)
            for p_schema, p_table in partitions:
                child = self._reusable(spec, p_schema, p_table)
                if child is None:
                    part = self._partition_spec(spec, p_schema, p_table)
                    child = part.name
                    if (leftover := self._index_state(p_schema, child)) is not None and not leftover.valid:
                        self._drop_leftover(p_schema, child)
                    if error := run(self._index_sql(part, online=True), f"partition {p_schema}.{p_table}"):
                        return result("failed", error)
                if not self._attached(p_schema, child):
                    attach = self._attach_sql(schema, spec.name, p_schema, child)
                    if error := run(attach, f"attach {p_schema}.{child}"):
                        return result("failed", error)
        finally:
            self._reset_timeouts()
        state = self._index_state(schema, spec.name)
        if state is None or not state.valid:
            return result("failed", f"{spec.name!r} is not valid after attaching every partition")
        return result("created")

    def _reusable(self, spec: IndexSpec, p_schema: str, p_table: str) -> str | None:
        """A valid index of the partition with ``spec``'s definition, attached to no parent index."""
        for ix in self.indexes([f"{p_schema}.{p_table}"]):
            same = (ix.columns, ix.include, ix.unique) == (spec.columns, spec.include, spec.unique) and (
                ix.descending == (spec.descending or (False,) * len(spec.columns))
            )
            if same and ix.valid and not (ix.partial or ix.expression) and not self._attached(p_schema, ix.name):
                return ix.name
        return None

    def _attached(self, schema: str, index: str) -> bool:
        return bool(self._run(_ATTACHED_SQL, [schema, index]))

    def _index_state(self, schema: str, name: str) -> _IndexState | None:
        rows = self._run(_INDEX_STATE_SQL, [schema, name])
        if not rows:
            return None
        table, valid, builder = rows[0]
        return _IndexState(table, bool(valid), builder)

    def _drop_sql(self, schema: str, name: str) -> sql.Composed:
        if self._run(_PARTITIONED_INDEX_SQL, [schema, name]):
            # PostgreSQL refuses CONCURRENTLY here; the drop takes its partitions' indexes with it
            return sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, name))
        return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name))

    def _set_timeouts(self, lock_timeout_s: float, statement_timeout_s: float | None = None) -> None:
        settings = {"lock_timeout": lock_timeout_s, "statement_timeout": statement_timeout_s}
        for setting, seconds in settings.items():
            if seconds is not None:
                value = sql.Literal(f"{max(1, round(seconds * 1000))}ms")
                self._run(sql.SQL("SET {} = {}").format(sql.Identifier(setting), value))

    def _reset_timeouts(self) -> None:
        self._run("RESET lock_timeout")
        self._run("RESET statement_timeout")

    def _online_ddl(
        self,
        statement: sql.Composable | Callable[[], None],
        retries: int,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> tuple[int, psycopg.Error | None]:
        """Run an online DDL (a statement, or a function sending statements) with retries; (attempts, error or None)."""
        attempts = 0

        def attempt(n: int) -> None:
            nonlocal attempts
            attempts = n
            if callable(statement):
                statement()
            else:
                self._run(statement)

        try:
            with_retries(attempt, _RETRYABLE, retries, on_failure=on_failure)
        except psycopg.Error as err:
            return attempts, err
        return attempts, None

    def _drop_leftover(self, schema: str, name: str) -> bool:
        """Drop the INVALID index a failed build left; True if one was dropped (psycopg errors: blocked)."""
        state = self._index_state(schema, name)
        if state is None or state.valid or state.table is None or state.builder_pid is not None:
            return False
        self._run(self._drop_sql(schema, name))
        return True

    def create_index(
        self,
        spec: IndexSpec,
        *,
        lock_timeout_s: float = 5.0,
        statement_timeout_s: float = 3600.0,
        retries: int = 3,
    ) -> DdlResult:
        schema, _ = split_table(spec.table, spec.schema)
        if (partitions := self._partitions(spec)) is not None:
            return self._create_partitioned_index(spec, partitions, lock_timeout_s, retries)
        statement = self.index_ddl(spec)
        start = time.perf_counter()

        def result(status: Any, attempts: int = 0, error: str | None = None, cleaned: bool = False) -> DdlResult:
            elapsed = (time.perf_counter() - start) * 1000.0
            return DdlResult("create", spec.table, spec.name, status, statement, attempts, elapsed, error, cleaned)

        existing = self._index_state(schema, spec.name)
        if existing is not None:
            if existing.table is None:
                return result("failed", error=f"a relation named {spec.name!r} that is not an index exists")
            if existing.builder_pid is not None:
                return result("failed", error=f"index is being built by backend pid {existing.builder_pid}")
            if existing.valid:
                return result("exists")
            # An INVALID index that was there before: dbopt's own crashed build is dropped by the
            # caller, who can tell (pipeline.create_index); nobody else's is dropped here.
            return result("failed", error=f"an INVALID index {spec.name!r} exists; left alone (not dropped)")
        cleaned = False

        # The index did not exist when this call began: an INVALID one now is this call's own failed build.
        def clean_leftover() -> None:
            nonlocal cleaned
            cleaned = self._drop_leftover(schema, spec.name) or cleaned

        def clean_between_attempts(_: BaseException) -> None:
            with contextlib.suppress(psycopg.Error):  # still blocked: the next attempt tries again
                clean_leftover()

        self._set_timeouts(lock_timeout_s, statement_timeout_s)
        try:

            def build() -> None:
                clean_leftover()  # IF NOT EXISTS would skip a leftover and report success
                self._run(self._index_sql(spec, online=True))
                # the ownership mark: dbopt drops or rebuilds only indexes that carry it
                mark = sql.SQL("COMMENT ON INDEX {} IS {}").format(
                    sql.Identifier(schema, spec.name), sql.Literal(OWNER_MARK)
                )
                self._run(mark)

            attempts, err = self._online_ddl(build, retries, clean_between_attempts)
            if err is None:
                return result("created", attempts, cleaned=cleaned)
            # cleaned up in this call (with retries: a blocker may keep the first drop from finishing)
            cleanup = self._online_ddl(clean_leftover, retries)[1]
            error = str(err).strip()
            state = self._index_state(schema, spec.name)
            left = None
            if state is not None and not state.valid:
                left = f"INVALID index {spec.name!r}"
                error += f"; INVALID index {spec.name!r} could not be dropped (still blocked: {cleanup})"
            return dataclasses.replace(result("failed", attempts, error, cleaned), left_behind=left)
        finally:
            self._reset_timeouts()

    def drop_index(self, table: str, name: str, *, lock_timeout_s: float = 5.0, retries: int = 3) -> DdlResult:
        schema, bare_table = split_table(table)
        drop = self._drop_sql(schema, name)
        statement = self._text(drop)
        start = time.perf_counter()
        state = self._index_state(schema, name)
        if state is None:
            return DdlResult("drop", table, name, "absent", statement, 0)
        if state.table != bare_table:
            error = f"{name!r} is not an index of {table!r} (it belongs to {state.table or 'no table'!r})"
            return DdlResult("drop", table, name, "failed", statement, 0, error=error)
        self._set_timeouts(lock_timeout_s)
        try:
            attempts, err = self._online_ddl(drop, retries)
        finally:
            self._reset_timeouts()
        elapsed = (time.perf_counter() - start) * 1000.0
        if err is not None:
            return DdlResult("drop", table, name, "failed", statement, attempts, elapsed, str(err).strip())
        return DdlResult("drop", table, name, "dropped", statement, attempts, elapsed)

    # --- one run at a time -------------------------------------------------------------------
    def identity(self) -> str:
        try:  # the cluster's own id survives address changes; reading it may need pg_monitor
            cluster = str(self._run("SELECT system_identifier FROM pg_control_system()")[0][0])
        except psycopg.errors.InsufficientPrivilege:
            cluster = "{}:{}".format(*self._run("SELECT inet_server_addr(), inet_server_port()")[0])
        return f"postgres:{cluster}/{self._run('SELECT current_database()')[0][0]}"

    def _run_lock_key(self) -> int:
        return int.from_bytes(hashlib.sha1(self.identity().encode()).digest()[:8], "big", signed=True)

    def try_run_lock(self, note: str) -> bool:
        if not self._run("SELECT pg_try_advisory_lock(%s)", [self._run_lock_key()])[0][0]:
            return False
        # pg_stat_activity shows the holder to a second run, on any machine
        self._run("SELECT set_config('application_name', %s, false)", [f"dbopt {note}"[:63]])
        return True

    def release_run_lock(self) -> None:
        self._run("SELECT pg_advisory_unlock(%s)", [self._run_lock_key()])
        self._run("SELECT set_config('application_name', %s, false)", [self._params["application_name"]])

    def run_lock_holder(self) -> str | None:
        key = self._run_lock_key() & 0xFFFFFFFFFFFFFFFF
        rows = self._run(_RUN_LOCK_HOLDER_SQL, [key >> 32, key & 0xFFFFFFFF])
        if not rows:
            return None
        pid, app, addr, since = rows[0]
        where = addr or "local socket"
        return f"backend pid {pid} ({app or 'no application_name'}) from {where} since {since:%Y-%m-%d %H:%M:%S %Z}"

    # --- health and safety -------------------------------------------------------------------
    def health(self, long_transaction_s: float = 60.0) -> HealthFigures:
        h = self._run(_HEALTH_SQL, [long_transaction_s], namedtuple_row)[0]
        return HealthFigures(
            cache_hit_ratio=h.hit / (h.hit + h.read) if h.hit + h.read else None,
            connections_used=h.used,
            connections_max=h.max_connections,
            replication_lag_s=h.replay_lag if h.standby else h.replicas_lag,
            long_transactions=h.long_transactions,
            longest_transaction_s=h.longest,
            deadlocks=h.deadlocks,
            server_version=h.version,
        )

    def backup(self, tables: Iterable[str], dest_dir: Path, undo: Sequence[IndexSpec] = ()) -> BackupResult:
        names = list(tables)
        found = [self._find_table(t) for t in names]  # fails early, naming a missing table
        pairs = [(schema, table) for schema, table, _ in found]
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        stamp = timestamp()
        path = dest_dir / f"dbopt-schema-{self._params.get('dbname', 'db')}-{stamp}.sql"
        if shutil.which("pg_dump"):
            self._pg_dump(pairs, path)
            detail = "pg_dump --schema-only"
        else:
            path.write_text(self._catalog_ddl([(schema, table, row[0]) for schema, table, row in found]))
            detail = "DDL reconstructed from the catalog (pg_dump not on PATH)"
        undo_path = None
        if undo:
            undo_path = dest_dir / f"dbopt-undo-{self._params.get('dbname', 'db')}-{stamp}.sql"
            drops = [self._text(self._drop_sql(split_table(s.table, s.schema)[0], s.name)) + ";" for s in undo]
            header = "-- dbopt undo: drops the indexes dbopt created. Run with psql -f (each statement on its own).\n"
            undo_path.write_text(header + "\n".join(drops) + "\n")
        text = path.read_text() if path.exists() else ""
        verified = bool(text) and all(self._has_create_table(text, s, t) for s, t in pairs)
        return BackupResult(
            kind="ddl_dump",
            path=str(path),
            verified=verified,
            tables=tuple(names),
            size_bytes=path.stat().st_size if path.exists() else None,
            undo_path=str(undo_path) if undo_path else None,
            detail=detail,
        )

    def _has_create_table(self, text: str, schema: str, table: str) -> bool:
        # pg_dump quotes only where needed (quote_ident); the catalog fallback always quotes
        minimal = self._run("SELECT quote_ident(%s) || '.' || quote_ident(%s)", [schema, table])[0][0]
        full = self._text(sql.Identifier(schema, table))
        return any(f"CREATE TABLE {name} (" in text for name in (minimal, full))

    def _pg_dump(self, pairs: Sequence[tuple[str, str]], path: Path) -> None:
        params = {k: v for k, v in self._params.items() if k != "password"}
        env = dict(os.environ)
        if "password" in self._params:
            env["PGPASSWORD"] = str(self._params["password"])  # not on the command line (ps shows it)
        cmd = ["pg_dump", "--schema-only", "--strict-names", "--file", str(path), "--dbname", make_conninfo(**params)]
        for schema, table in pairs:
            # a quoted pattern matches the name literally (no wildcards)
            cmd += ["--table", self._text(sql.Identifier(schema, table))]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise TargetError(f"pg_dump failed (exit {done.returncode}): {done.stderr.strip()}")

    def _catalog_ddl(self, tables: Sequence[tuple[str, str, int]]) -> str:
        """CREATE TABLE/INDEX statements from the catalog (columns, constraints, indexes; no sequences)."""
        out = [f"-- dbopt schema backup of {self._params.get('dbname')} at {timestamp()}\n"]
        for schema, table, oid in tables:
            lines = []
            for col, typ, notnull, default, identity, generated in self._run(_COLUMNS_DDL_SQL, [oid]):
                line = sql.SQL("{} {}").format(sql.Identifier(col), sql.SQL(typ))
                if generated == "s":
                    line += sql.SQL(" GENERATED ALWAYS AS ({}) STORED").format(sql.SQL(default))
                elif identity:
                    kind = "ALWAYS" if identity == "a" else "BY DEFAULT"
                    line += sql.SQL(f" GENERATED {kind} AS IDENTITY")
                elif default is not None:
                    line += sql.SQL(" DEFAULT {}").format(sql.SQL(default))
                if notnull:
                    line += sql.SQL(" NOT NULL")
                lines.append(line)
            for name, definition in self._run(_CONSTRAINTS_DDL_SQL, [oid]):
                lines.append(sql.SQL("CONSTRAINT {} {}").format(sql.Identifier(name), sql.SQL(definition)))
            body = sql.SQL(",\n    ").join(lines)
            out.append(
                self._text(sql.SQL("CREATE TABLE {} (\n    {}\n);\n").format(sql.Identifier(schema, table), body))
            )
            out.extend(f"{definition};\n" for (definition,) in self._run(_PLAIN_INDEXES_DDL_SQL, [oid]))
        return "\n".join(out)
