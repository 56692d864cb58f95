"""What-if planning for SQLite, the way the sqlite3 CLI's ``.expert`` does it.

An in-memory database gets the real schema plus the hypothetical indexes. It has no rows, so
``ANALYZE`` there would be useless: instead ``sqlite_stat1`` is written with figures sampled from
the real tables (row count, average rows per distinct key prefix) and reloaded, so the planner
weighs the indexes as it would on the real data. The real database is only read.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Collection, Sequence

from dbopt.targets.base import IndexSpec, TargetError
from dbopt.targets.sqlite_parse import index_shape, without_rowid_pk

Run = Callable[[str], list[tuple]]
Quote = Callable[[str], str]


def estimated_distinct(total: int, sampled: int, distinct: int, singletons: int) -> float:
    """Distinct values in ``total`` rows from a sample (Haas-Stokes Duj1, as PostgreSQL's ANALYZE uses)."""
    if sampled >= total:
        return float(distinct)
    estimate = sampled * distinct / (sampled - singletons + singletons * sampled / total)
    return min(max(estimate, float(distinct)), float(total))


class StatSampler:
    """``sqlite_stat1`` figures computed from the real tables; cached for the target's lifetime.

    The sample is the first ``sample_rows`` rows (cheap, bounded), the row count exact.
    """

    def __init__(self, run: Run, quote: Quote, sample_rows: int = 20000) -> None:
        self._run, self._quote, self.sample_rows = run, quote, sample_rows
        self._rows: dict[tuple[str, str | None], int] = {}
        self._stats: dict[tuple[str, tuple[str, ...], str | None], str | None] = {}

    @staticmethod
    def _where(predicate: str | None) -> str:
        return f" WHERE {predicate}" if predicate else ""

    def rows(self, table: str, predicate: str | None = None) -> int:
        key = (table.lower(), predicate)
        if key not in self._rows:
            sql = f"SELECT COUNT(*) FROM {self._quote(table)}{self._where(predicate)}"
            self._rows[key] = int(self._run(sql)[0][0])
        return self._rows[key]

    def index_stat(self, table: str, keys: Sequence[str], predicate: str | None = None) -> str | None:
        """``"N a1 … ak"``: rows in the index, then average rows per distinct prefix of 1..k keys."""
        cache_key = (table.lower(), tuple(keys), predicate)
        if cache_key not in self._stats:
            self._stats[cache_key] = self._compute(table, keys, predicate)
        return self._stats[cache_key]

    def _compute(self, table: str, keys: Sequence[str], predicate: str | None) -> str | None:
        total = self.rows(table, predicate)
        if total == 0:
            return None  # an empty table: the planner's defaults are as good as anything
        columns = ", ".join(f"{k} AS k{i}" for i, k in enumerate(keys))
        sample = f"SELECT {columns} FROM {self._quote(table)}{self._where(predicate)} LIMIT {int(self.sample_rows)}"
        figures = [total]
        for width in range(1, len(keys) + 1):
            group = ", ".join(f"k{i}" for i in range(width))
            sampled, distinct, singletons = self._run(
                f"SELECT SUM(n), COUNT(*), SUM(n = 1) FROM (SELECT COUNT(*) AS n FROM ({sample}) GROUP BY {group})"
            )[0]
            estimate = estimated_distinct(total, sampled, distinct, singletons)
            figures.append(max(1, math.ceil(total / estimate)))
        return " ".join(map(str, figures))


def planner_copy(
    schema: Sequence[tuple[str, str, str | None]],
    hypothetical: Sequence[tuple[IndexSpec, str]],
    sampler: StatSampler,
    quote: Quote,
    tables: Collection[str] | None = None,
) -> tuple[sqlite3.Connection, list[str]]:
    """An in-memory database with ``schema`` (type, name, sql), the hypothetical indexes and statistics.

    ``tables`` (lower-cased) limits the sampled statistics to the tables a query reads (None: all).
    Returns the connection and the schema objects that could not be copied (e.g. a virtual table
    whose module is not loaded here), so a failing plan can say why.
    """
    mem = sqlite3.connect(":memory:", isolation_level=None)
    skipped: list[str] = []
    try:
        for kind, name, sql in schema:
            if name.lower().startswith("sqlite_") or kind == "trigger" or not sql:
                continue
            try:
                mem.execute(sql)
            except sqlite3.Error as err:
                if "already exists" not in str(err):  # shadow tables come with their virtual table
                    skipped.append(f"{kind} {name}: {err}")
        for spec, ddl in hypothetical:
            try:
                mem.execute(ddl)
            except sqlite3.Error as err:
                raise TargetError(f"hypothetical index {spec.name} on {spec.table}{spec.columns}: {err}") from err
        _write_stats(mem, sampler, quote, tables)
    except BaseException:
        mem.close()
        raise
    return mem, skipped


def _write_stats(mem: sqlite3.Connection, sampler: StatSampler, quote: Quote, tables: Collection[str] | None) -> None:
    mem.execute("ANALYZE")  # creates the (empty) sqlite_stat1: it cannot be created by name
    definitions = dict(mem.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall())
    plain_tables = mem.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "AND sql NOT LIKE 'CREATE VIRTUAL%'"
    ).fetchall()
    stats: list[tuple[str, str | None, str]] = []
    for (table,) in plain_tables:
        if tables is not None and table.lower() not in tables:
            continue
        stats.append((table, None, str(sampler.rows(table))))
        for _seq, index, _unique, origin, _partial in mem.execute(f"PRAGMA index_list({quote(table)})").fetchall():
            xinfo = mem.execute(f"PRAGMA index_xinfo({quote(index)})").fetchall()
            shape = index_shape(xinfo, definitions.get(index))
            keys = [k.name if k.expression else quote(k.name) for k in shape.keys]
            stat = sampler.index_stat(table, keys, shape.where)
            if stat:
                # ANALYZE files a WITHOUT ROWID table's primary key under the table's own name
                stats.append((table, table if without_rowid_pk(origin, xinfo) else index, stat))
    mem.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", stats)
    mem.execute("ANALYZE sqlite_master")  # reload: the planner reads sqlite_stat1 only on load
