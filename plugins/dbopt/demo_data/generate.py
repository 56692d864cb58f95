"""Create the demo schema and fill it with deterministic data, set-based inside the database.

The SQL lives in include/demo (schema_<dialect>.sql, data_<dialect>.sql); this module fills in the
row counts for the scale, runs the statements one by one (timing each) and reports what it built.
"""

from __future__ import annotations

import re
import string
import time
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from sqlalchemy.engine import URL

from dbopt.demo_data.connect import connect, execute, quote, sqlite_path
from dbopt.demo_data.errors import DemoDataError
from dbopt.demo_data.sizes import DEMO_DIR, FAMILY_OF_DIALECT, check_scale, sizes
from dbopt.targets import dialect_of
from dbopt.targets.base import TOOL_MARKER, Data

FILE_SUFFIX = {"postgres": "postgres", "mysql": "mysql", "sqlite": "sqlite"}
UNINSTRUMENT_SESSION = (
    "UPDATE performance_schema.threads SET INSTRUMENTED = 'NO' WHERE PROCESSLIST_ID = CONNECTION_ID()"
)
_CREATE_TABLE = re.compile(r"^CREATE TABLE (\w+)", re.MULTILINE)
_INSERT_INTO = re.compile(r"^INSERT INTO ([\w.]+)", re.IGNORECASE)


@dataclass(frozen=True)
class GenerationResult(Data):
    """What ``generate`` built: rows per table and wall seconds per step (schema, each table, analyze…)."""

    dialect: str
    scale: float
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0


def sql_file(kind: str, dialect: str) -> Path:
    return DEMO_DIR / f"{kind}_{FILE_SUFFIX[dialect]}.sql"


def statements(path: Path, counts: dict[str, int] | None = None) -> list[str]:
    """The statements of an include/demo SQL file, ``${name}`` filled from ``counts``.

    Whole-line ``--`` comments are dropped; a statement ends with ``;`` at the end of a line.
    """
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    if counts is not None:
        try:
            text = string.Template(text).substitute({k: str(int(v)) for k, v in counts.items()})
        except (KeyError, ValueError) as err:
            raise DemoDataError(f"{path}: placeholder {err} is not a known size; use one of {sorted(counts)}") from err
    return [s.strip() for s in re.split(r";[ \t]*$", text, flags=re.MULTILINE) if s.strip()]


def demo_tables(dialect: str) -> list[str]:
    """Tables the demo schema of ``dialect`` creates, in file order."""
    return _CREATE_TABLE.findall(sql_file("schema", dialect).read_text())


def generate(url: str | URL, scale: float = 1.0, *, replace: bool = False) -> GenerationResult:
    """Create the demo tables in the database ``url`` names and fill them for ``scale``; then ANALYZE.

    Scale 1.0 gives a million rows in each big table (analytics, audit_log, sessions); SQLite URLs
    get the worklog schema (``generate_sqlite``). Tables of the demo that already exist are an error
    unless ``replace`` (then they are dropped first).
    """
    scale = check_scale(scale)  # before connecting: bad input changes nothing
    dialect = dialect_of(url)
    if dialect == "sqlite":
        return generate_sqlite(sqlite_path(url), scale, replace=replace)
    counts = sizes(FAMILY_OF_DIALECT[dialect], scale)
    _, conn = connect(url)
    with closing(conn):
        if dialect == "mysql":
            # Keep the generator's own statements out of the digest table the advisor reads
            # (digests drop comments, so TOOL_MARKER cannot); without the privilege they stay in.
            with suppress(pymysql.MySQLError):
                execute(conn, UNINSTRUMENT_SESSION)
        return _load(conn, dialect, scale, counts, replace)


def generate_sqlite(path: str | Path, scale: float = 1.0, *, replace: bool = False) -> GenerationResult:
    """The worklog store of seed 003 in the SQLite file ``path`` (≥ 200k worklogs at scale 1.0)."""
    scale = check_scale(scale)
    counts = sizes("sqlite", scale)
    path = Path(path)
    if not path.parent.is_dir():
        raise DemoDataError(f"directory {path.parent} does not exist; create it or choose another SQLite path")
    _, conn = connect(f"sqlite:///{path}")
    with closing(conn):
        return _load(conn, "sqlite", scale, counts, replace)


def _load(conn: Any, dialect: str, scale: float, counts: dict[str, int], replace: bool) -> GenerationResult:
    tables = demo_tables(dialect)
    # Tagged so the generator's statements never count as the workload (pg_stat_statements keeps it).
    tag = f"{TOOL_MARKER} " if dialect == "postgres" else ""
    existing = _existing_tables(conn, dialect, tables, tag)
    if existing and not replace:
        raise DemoDataError(
            f"the database already has demo tables {existing}; pass replace=True (CLI: --replace) to drop "
            "and regenerate them, or use an empty database"
        )
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    # PostgreSQL and SQLite load in one transaction: a failed load leaves the database as it was
    # (replaced tables included). MariaDB commits every DDL statement, so there it cannot.
    atomic = dialect != "mysql"
    if atomic:
        execute(conn, tag + "BEGIN")
    try:
        for table in existing:
            _timed(conn, f"{tag}DROP TABLE {quote(dialect, table)}", seconds, "schema")
        for stmt in statements(sql_file("schema", dialect)):
            _timed(conn, tag + stmt, seconds, "schema")
        for stmt in statements(sql_file("data", dialect), counts):
            m = _INSERT_INTO.match(stmt)
            _timed(conn, tag + stmt, seconds, m.group(1) if m else stmt.split(None, 1)[0].lower())
    except BaseException:
        if atomic:
            execute(conn, tag + "ROLLBACK")
        raise
    if atomic:
        execute(conn, tag + "COMMIT")
    total = time.perf_counter() - started
    rows = {t: counts[t] for t in tables}
    return GenerationResult(
        dialect=dialect,
        scale=scale,
        rows=rows,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        total_s=round(total, 3),
    )


def _timed(conn: Any, stmt: str, seconds: dict[str, float], step: str) -> None:
    start = time.perf_counter()
    try:
        execute(conn, stmt)
    except Exception as err:
        raise DemoDataError(f"demo data step {step!r} failed: {err}\nstatement: {stmt[:300]}") from err
    seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - start


def _existing_tables(conn: Any, dialect: str, tables: list[str], tag: str) -> list[str]:
    query = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
        "postgres": "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
        "mysql": "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
    }[dialect]
    names = {r[0] for r in execute(conn, tag + query)}
    return [t for t in tables if t in names]
