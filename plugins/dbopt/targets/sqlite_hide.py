"""Measure SQLite "as before" while new indexes exist: pin the old plan in the measured statement.

SQLite cannot hide an index from its planner, but a statement can name the index a table is read
with (``INDEXED BY ix``) or forbid indexes on it (``NOT INDEXED``). The old plan comes from an
in-memory copy of the schema without the hidden indexes and with the real ``sqlite_stat1`` rows:
SQLite plans from the schema and those statistics alone, so the copy plans as the real database did
before the build. The real database is only read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from dbopt.targets.base import Explain, TargetError


def planner_without(
    schema: Sequence[tuple[str, str, str | None]], stat1: Sequence[tuple[str, str | None, str]], hidden: Collection[str]
) -> sqlite3.Connection:
    """An in-memory database with ``schema`` (type, name, sql) minus the ``hidden`` indexes (lower-cased
    names) and the real ``sqlite_stat1`` rows (tbl, idx, stat)."""
    mem = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for kind, name, sql in schema:
            if name.lower().startswith("sqlite_") or kind == "trigger" or not sql or name.lower() in hidden:
                continue
            mem.execute(sql)
        if stat1:
            mem.execute("ANALYZE")  # creates the (empty) sqlite_stat1: it cannot be created by name
            mem.execute("DELETE FROM sqlite_stat1")
            kept = [(t, i, s) for t, i, s in stat1 if (i or "").lower() not in hidden]
            mem.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", kept)
            mem.execute("ANALYZE sqlite_master")  # reload: the planner reads sqlite_stat1 only on load
    except BaseException:
        mem.close()
        raise
    return mem


def pins(now: Explain, before: Explain, hidden: Collection[str]) -> dict[str, str | None]:
    """Lower-cased table → the index it was read with before (None: no index) for every table the
    current plan reads through a hidden index."""
    used_before: dict[str, str | None] = {}
    for scan in before.scans:
        used_before.setdefault(scan.table.lower(), scan.index)
    return {
        s.table.lower(): used_before.get(s.table.lower())
        for s in now.scans
        if s.index is not None and s.index.lower() in hidden
    }


def pinned(query: str, table_pins: dict[str, str | None]) -> str:
    """``query`` with ``INDEXED BY`` / ``NOT INDEXED`` after each pinned table's one reference."""
    try:
        tree = sqlglot.parse_one(query, read="sqlite")
    except SqlglotError as err:
        raise TargetError(f"cannot pin the old plan: the statement does not parse ({err}): {query[:200]}") from err
    for table, index in table_pins.items():
        refs = [t for t in tree.find_all(exp.Table) if t.name.lower() == table]
        if len(refs) != 1:
            raise TargetError(f"cannot pin the old plan: table {table!r} is read {len(refs)} times in {query[:200]}")
        refs[0].set("indexed", exp.Table(this=exp.to_identifier(index)) if index else False)
    return tree.sql(dialect="sqlite")
