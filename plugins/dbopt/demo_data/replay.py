"""Replay the demo workload against a database, and concrete statements for the benchmark.

The replay sends statements the way an application would: through the plain driver, untagged, with
concrete values. So PostgreSQL's pg_stat_statements and MariaDB's performance_schema digests fill up
as in production; for SQLite, where the engine keeps no statistics, every statement is written to the
JSON-lines query log (``dbopt.targets.querylog``), as the application would.
"""

from __future__ import annotations

import random
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from dbopt.demo_data.connect import connect, sqlite_path
from dbopt.demo_data.errors import DemoDataError
from dbopt.demo_data.params import draw
from dbopt.demo_data.render import concrete_sql, qmark_sql
from dbopt.demo_data.sizes import FAMILY_OF_DIALECT, sizes
from dbopt.demo_data.workload import Query, Workload, load_workload
from dbopt.targets import dialect_of
from dbopt.targets.base import Data
from dbopt.targets.querylog import QueryLog, query_log_of, timed_execute


@dataclass(frozen=True)
class ReplayStats(Data):
    """What a replay ran: executions and total milliseconds per query name, and why it stopped."""

    dialect: str
    statements: int
    calls: dict[str, int] = field(default_factory=dict)
    total_ms: dict[str, float] = field(default_factory=dict)
    rows: int = 0  # rows the reads returned
    elapsed_s: float = 0.0
    stopped_by: str = "statements"  # "statements" | "time_limit"
    seed: int = 0
    scale: float = 1.0
    query_log: str | None = None  # SQLite: the JSON-lines log written


def query_log_path(url: str | URL) -> Path:
    """The query log of a SQLite URL, by the SQLite target's own rule."""
    return query_log_of(sqlite_path(url), make_url(url).query)


def _workload(workload: Workload | str | Path | None) -> Workload:
    return workload if isinstance(workload, Workload) else load_workload(workload)


def replay(
    url: str | URL,
    workload: Workload | str | Path | None = None,
    statements: int = 1000,
    seed: int = 0,
    *,
    scale: float = 1.0,
    time_limit_s: float = 300.0,
    query_log: str | Path | None = None,
) -> ReplayStats:
    """Run ``statements`` weighted workload statements (or until ``time_limit_s``) against ``url``.

    The same seed gives the same statement sequence. ``scale`` should match the generated data so
    drawn ids exist. SQLite statements are logged to ``query_log`` (default: ``query_log_path(url)``).
    """
    if isinstance(statements, bool) or not isinstance(statements, int) or statements < 1:
        raise DemoDataError(f"statements must be a positive integer, got {statements!r}")
    if not isinstance(time_limit_s, int | float) or not time_limit_s > 0:
        raise DemoDataError(f"time_limit_s must be a positive number of seconds, got {time_limit_s!r}")
    dialect = dialect_of(url)
    queries = _workload(workload).queries(dialect)
    counts = sizes(FAMILY_OF_DIALECT[dialect], scale)
    log = QueryLog(query_log or query_log_path(url)) if dialect == "sqlite" else None
    rng = random.Random(seed)
    weights = [q.weight for q in queries]
    calls: dict[str, int] = {}
    total_ms: dict[str, float] = {}
    rows = 0
    stopped_by = "statements"
    started = time.perf_counter()
    _, conn = connect(url)
    with closing(conn):
        for _ in range(statements):
            if time.perf_counter() - started > time_limit_s:
                stopped_by = "time_limit"
                break
            query = rng.choices(queries, weights)[0]
            values = draw(query, rng, counts)
            t0 = time.perf_counter()
            rows += _run(conn, dialect, query, values, log)
            total_ms[query.name] = total_ms.get(query.name, 0.0) + (time.perf_counter() - t0) * 1000.0
            calls[query.name] = calls.get(query.name, 0) + 1
    return ReplayStats(
        dialect=dialect,
        statements=sum(calls.values()),
        calls=calls,
        total_ms={k: round(v, 3) for k, v in total_ms.items()},
        rows=rows,
        elapsed_s=round(time.perf_counter() - started, 3),
        stopped_by=stopped_by,
        seed=seed,
        scale=scale,
        query_log=str(log.path) if log else None,
    )


def _run(conn: Any, dialect: str, query: Query, values: dict[str, Any], log: QueryLog | None) -> int:
    """Execute one statement; the number of rows it returned."""
    text = query.text(dialect)
    try:
        if log is not None:
            qmark, params = qmark_sql(text, values)
            return len(timed_execute(conn, log, qmark, params))
        cur = conn.cursor()
        try:
            cur.execute(concrete_sql(text, values, dialect))
            return len(cur.fetchall()) if cur.description else 0
        finally:
            cur.close()
    except Exception as err:
        raise DemoDataError(f"workload query {query.name!r} failed on {dialect}: {err}\nvalues: {values}") from err


def concrete_queries(
    workload: Workload | str | Path | None,
    n_per_query: int,
    seed: int = 0,
    *,
    dialect: str,
    scale: float = 1.0,
    include_writes: bool = True,
) -> dict[str, list[str]]:
    """``n_per_query`` concrete SQL texts (real literal values) per workload query of ``dialect``.

    Each query draws from its own generator seeded by (seed, name), so adding a query to the file
    does not change the values of the others.
    """
    if isinstance(n_per_query, bool) or not isinstance(n_per_query, int) or n_per_query < 1:
        raise DemoDataError(f"n_per_query must be a positive integer, got {n_per_query!r}")
    if dialect not in FAMILY_OF_DIALECT:
        raise DemoDataError(f"unknown dialect {dialect!r}; use one of {sorted(FAMILY_OF_DIALECT)}")
    counts = sizes(FAMILY_OF_DIALECT[dialect], scale)
    out: dict[str, list[str]] = {}
    for query in _workload(workload).queries(dialect):
        if query.is_write and not include_writes:
            continue
        rng = random.Random(f"{seed}:{query.name}")
        text = query.text(dialect)
        out[query.name] = [concrete_sql(text, draw(query, rng, counts), dialect) for _ in range(n_per_query)]
    return out
