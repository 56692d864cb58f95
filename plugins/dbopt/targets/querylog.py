"""A JSON-lines query log: the workload source for engines that keep no statement statistics (SQLite).

Applications (and the demo replayer) append one line per statement with :class:`QueryLog` or
:func:`timed_execute`; :func:`read_query_log` turns the log into normalized, aggregated
:class:`~dbopt.targets.base.Statement` rows, like pg_stat_statements does on the server.

Line format: ``{"ts": "2026-02-10T12:41:03.123+00:00", "sql": "SELECT …", "ms": 1.25, "rows": 3}``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlglot.tokens import Token, TokenType

from dbopt.targets import sqltext
from dbopt.targets.base import TOOL_MARKER, Statement, TargetError, WorkloadFilter, timestamp

logger = logging.getLogger(__name__)


def tokens(sql: str) -> list[Token]:
    """SQLite tokens of ``sql`` (raises sqlglot's TokenError on text it cannot tokenize)."""
    return sqltext.tokenize(sql, "sqlite")


def placeholder_count(sql: str) -> int:
    """Number of ``?`` placeholders (what normalized text needs bound to be planned)."""
    return sum(1 for t in tokens(sql) if t.token_type == TokenType.PLACEHOLDER)


def normalize(sql: str) -> str:
    """SQLite statement text with its literals folded to ``?`` (``dbopt.targets.sqltext``)."""
    return sqltext.normalize(sql, "sqlite")


def sql_literal(value: Any) -> str:
    """``value`` as an SQLite literal, the way the sqlite3 module would have bound it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NULL"  # SQLite binds NaN as NULL
        return repr(value) if math.isfinite(value) else ("9e999" if value > 0 else "-9e999")
    if isinstance(value, bytes | bytearray | memoryview):
        return f"X'{bytes(value).hex()}'"
    # str, and what the sqlite3 default adapters turn into text (date, datetime)
    return "'" + str(value).replace("'", "''") + "'"


def inline_parameters(sql: str, params: Sequence[Any]) -> str:
    """``sql`` with each ``?`` replaced by the matching parameter as a literal."""
    out, last, i = [], 0, 0
    for tok in tokens(sql):
        if tok.token_type == TokenType.PLACEHOLDER:
            if i >= len(params):
                raise ValueError(f"statement has more ? placeholders than the {len(params)} parameters given")
            out += [sql[last : tok.start], sql_literal(params[i])]
            last, i = tok.end + 1, i + 1
    if i != len(params):
        raise ValueError(f"statement has {i} ? placeholders but {len(params)} parameters were given")
    return "".join([*out, sql[last:]])


class QueryLog:
    """Appends timed statements to a JSON-lines file.

    Each record opens the file in append mode and writes its line with one ``write`` call, so several
    processes can log to one file, and a rotation (rename) is picked up by the next record.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def record(self, sql: str, duration_ms: float, rows: int | None) -> None:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = {"ts": ts, "sql": sql, "ms": round(duration_ms, 3), "rows": rows}
        data = (json.dumps(line) + "\n").encode()  # ASCII escapes: any str, even lone surrogates
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            while written < len(data):  # only on a full disk or a signal; finish the line rather than lose it
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)


def timed_execute(conn: sqlite3.Connection, log: QueryLog, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run one statement on ``conn``, fetch its rows and log it (parameters inlined) with its duration."""
    if not isinstance(params, Sequence) or isinstance(params, str):
        raise TypeError("timed_execute takes ? placeholders with a sequence of parameters")
    start = time.perf_counter()
    cur = conn.execute(sql, params)
    rows = cur.fetchall()
    ms = (time.perf_counter() - start) * 1000.0
    log.record(inline_parameters(sql, params), ms, len(rows) if cur.description else max(cur.rowcount, 0))
    return rows


@dataclass
class QueryLogScan:
    """What reading a log found: the aggregated statements and the lines it had to leave out."""

    statements: list[Statement] = field(default_factory=list)
    lines: int = 0
    malformed: int = 0
    first_malformed_line: int | None = None
    excluded: int = 0  # dbopt's own statements (TOOL_MARKER)


@dataclass
class _Totals:
    calls: int = 0
    total_ms: float = 0.0
    sum_sq: float = 0.0
    rows: int | None = None
    slowest_ms: float = -1.0
    slowest: str = ""

    def add(self, sql: str, ms: float, rows: int | None) -> None:
        self.calls += 1
        self.total_ms += ms
        self.sum_sq += ms * ms
        if rows is not None:
            self.rows = (self.rows or 0) + rows
        if ms > self.slowest_ms:
            self.slowest_ms, self.slowest = ms, sql

    def statement(self, query: str) -> Statement:
        mean = self.total_ms / self.calls
        return Statement(
            digest=Statement.digest_of(query),
            query=query,
            calls=self.calls,
            total_ms=self.total_ms,
            mean_ms=mean,
            stddev_ms=math.sqrt(max(0.0, self.sum_sq / self.calls - mean * mean)),  # population, as pg
            rows=self.rows,
            example=self.slowest,
            source="querylog",
        )


def _parse_line(raw: bytes) -> tuple[str, float, int | None] | None:
    """(sql, ms, rows) of one log line, or None if the line is not a valid record."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(rec, dict):
        return None
    sql, ms, rows = rec.get("sql"), rec.get("ms"), rec.get("rows")
    if not isinstance(sql, str) or not sql.strip():
        return None
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms) or ms < 0:
        return None
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
        return None
    return sql, float(ms), rows


def _lines(path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as fh:
            yield from fh
    except FileNotFoundError:
        return
    except OSError as err:
        raise TargetError(f"cannot read query log {path}: {err.strerror or err}; fix its permissions or path") from err


def scan_query_log(path: str | Path) -> QueryLogScan:
    """Aggregate a query log per normalized statement; a missing log is an empty workload."""
    scan = QueryLogScan()
    totals: dict[str, _Totals] = {}
    for number, raw in enumerate(_lines(Path(path)), start=1):
        scan.lines = number
        if not raw.strip():
            continue
        parsed = _parse_line(raw)
        if parsed is None:
            scan.malformed += 1
            scan.first_malformed_line = scan.first_malformed_line or number
            continue
        sql, ms, rows = parsed
        if TOOL_MARKER in sql:
            scan.excluded += 1
            continue
        totals.setdefault(normalize(sql), _Totals()).add(sql, ms, rows)
    scan.statements = [t.statement(query) for query, t in totals.items()]
    return scan


def query_log_of(database: Path, query: Mapping[str, Any]) -> Path:
    """The query log of a SQLite database: the URL's ``?query_log=`` or ``<database path>.queries.jsonl``."""
    log = query.get("query_log")
    if log is not None and not isinstance(log, str):
        raise TargetError(f"URL parameter query_log given more than once for {database}; give one path")
    return Path(log) if log else Path(f"{database}.queries.jsonl")


def read_query_log(path: str | Path, flt: WorkloadFilter | None = None) -> list[Statement]:
    """The workload recorded in a query log, filtered; malformed lines are skipped with a warning."""
    scan = scan_query_log(path)
    if scan.malformed:
        logger.warning(
            "query log %s: skipped %d malformed line(s) of %d (first: line %d)",
            path,
            scan.malformed,
            scan.lines,
            scan.first_malformed_line,
        )
    return (flt or WorkloadFilter()).apply(scan.statements)


def rotate_query_log(path: str | Path) -> Path | None:
    """Start a fresh log by renaming the current one to ``<name>.<timestamp>.jsonl``; None if there was none.

    Nothing is deleted; writers open the file per record, so their next line starts the new log.
    """
    path = Path(path)
    if not path.exists():
        return None
    base = path.name.removesuffix(".jsonl")
    stamp = timestamp()
    for n in range(1000):
        dest = path.with_name(f"{base}.{stamp}{f'-{n}' if n else ''}.jsonl")
        if not dest.exists():
            try:
                path.rename(dest)
            except OSError as err:
                raise TargetError(f"cannot rotate query log {path} to {dest}: {err.strerror or err}") from err
            return dest
    raise TargetError(f"cannot rotate query log {path}: too many rotations named {base}.{stamp}-*.jsonl")
