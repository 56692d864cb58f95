"""MySQL/MariaDB slow query log file → the workload as ``Statement``s (like pt-query-digest's profile).

An entry is a block of ``# Key: value`` header lines (``# Time:``, ``# User@Host:``,
``# Query_time: … Lock_time: … Rows_sent: … Rows_examined: …`` and MariaDB's extra ``# Thread_id:``,
``# Rows_affected:``, ``# Full_scan:``, ``# explain:`` …) followed by the body: an optional
``use db;``, ``SET timestamp=…;`` and the statement, possibly over several lines. Statements are
grouped by their literal-free text (``mysql_text.normalize``).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from dbopt.targets.base import TOOL_MARKER, Statement, TargetError, WorkloadFilter
from dbopt.targets.mysql_text import is_workload_sql, normalize

_ENTRY_START = re.compile(r"^# (?:Time|User@Host):")
# "Schema:  QC_hit: No" has an empty Schema: a value never looks like the next "Key:".
_HEADER_FIELD = re.compile(r"(\w+):[ \t]+(?!\w+:)(\S+)")
_USE = re.compile(r"^use\s+`?([^`;]+)`?;\s*$", re.IGNORECASE)
_SET_TIMESTAMP = re.compile(r"^SET timestamp=\d+;\s*$", re.IGNORECASE)
# What mysqld writes when it (re)opens the log: never part of a statement.
_BANNER = (
    re.compile(r"^\S+, Version: .* started with:\s*$"),
    re.compile(r"^Tcp port: \d+"),
    re.compile(r"^Time\s+Id\s+Command\s+Argument\s*$"),
)


@dataclass
class _Entry:
    database: str | None  # from ``use db;`` (kept across entries, as mysqld logs it on change) or Schema:
    header: dict[str, str] = field(default_factory=dict)
    body: list[str] = field(default_factory=list)

    def statement(self) -> str:
        """The statement text: the body up to its last line ending in ';', without that ';'."""
        lines = [line for line in self.body if not any(b.match(line) for b in _BANNER)]
        while lines and not lines[-1].rstrip().endswith(";"):
            lines.pop()  # junk after the statement
        return "\n".join(lines).strip().removesuffix(";").strip()

    def number(self, key: str) -> float | None:
        try:
            return float(self.header[key])
        except (KeyError, ValueError):
            return None


def _entries(lines: list[str]) -> list[_Entry]:
    """Split the log into entries.

    A ``#`` line belongs to the header until the body starts; after that only ``# Time:`` or
    ``# User@Host:`` starts the next entry, so a ``#`` comment line inside a statement stays in it.
    """
    out: list[_Entry] = []
    database: str | None = None
    for line in lines:
        entry = out[-1] if out else None
        starts = bool(_ENTRY_START.match(line))
        if starts or (line.startswith("#") and entry is not None and not entry.body):
            if entry is None or entry.body or (starts and "Query_time" in entry.header):
                entry = _Entry(database)
                out.append(entry)
            fields = dict(_HEADER_FIELD.findall(line))
            entry.header.update(fields)
            if fields.get("Schema"):
                entry.database = fields["Schema"]
        elif entry is None:
            continue  # the file's banner or junk before the first entry
        elif not entry.body and (use := _USE.match(line)):
            database = entry.database = use.group(1)
        elif entry.body or not _SET_TIMESTAMP.match(line):
            entry.body.append(line)
    return out


def parse_slow_log(
    path: str | Path, flt: WorkloadFilter | None = None, *, database: str | None = None
) -> list[Statement]:
    """Aggregate a slow log per normalized statement, filtered by ``flt`` (default ``WorkloadFilter()``).

    ``database`` keeps only statements run in that database. dbopt's own statements (``TOOL_MARKER``)
    and non-DML (SET, SHOW, EXPLAIN, DDL, COMMIT, administrator commands) are left out. The example
    of each group is its slowest concrete statement.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise TargetError(f"cannot read slow query log {path}: {err.strerror or err}") from err
    groups: dict[str, list[tuple[str, str, float, _Entry]]] = {}
    for entry in _entries(lines):
        text = entry.statement()
        seconds = entry.number("Query_time")
        if seconds is None or not text or TOOL_MARKER in text or not is_workload_sql(text):
            continue
        if database is not None and entry.database != database:
            continue
        query = normalize(text)
        groups.setdefault(Statement.digest_of(query), []).append((query, text, seconds * 1000.0, entry))
    statements = [_aggregate(digest, members) for digest, members in groups.items()]
    return (flt or WorkloadFilter()).apply(statements)


def _aggregate(digest: str, members: list[tuple[str, str, float, _Entry]]) -> Statement:
    """One statement from its (normalized text, concrete text, milliseconds, entry) occurrences."""
    times = [ms for _, _, ms, _ in members]
    slowest = max(range(len(members)), key=times.__getitem__)

    def total(key: str) -> int | None:
        values = [entry.number(key) for *_, entry in members]
        return int(sum(v for v in values if v is not None)) if any(v is not None for v in values) else None

    sent, affected = total("Rows_sent"), total("Rows_affected")
    full_scans = [entry.header.get("Full_scan") for *_, entry in members]  # MariaDB log_slow_verbosity
    return Statement(
        digest=digest,
        query=members[0][0],
        calls=len(members),
        total_ms=sum(times),
        mean_ms=statistics.fmean(times),
        stddev_ms=statistics.pstdev(times),
        # like pg_stat_statements' rows: retrieved or affected
        rows=None if sent is None and affected is None else (sent or 0) + (affected or 0),
        rows_examined=total("Rows_examined"),
        no_index_used=sum(v == "Yes" for v in full_scans) if any(full_scans) else None,
        example=members[slowest][1],
        source="slowlog",
    )
