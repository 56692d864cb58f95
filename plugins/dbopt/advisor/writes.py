"""Write cost per table, from the write statements measured in the same window as the reads.

A new index slows every INSERT/UPDATE/DELETE on its table. The time those statements took comes
from the same source and window as the read statements (pg_stat_statements, performance_schema
digests, the query or slow log), so benefit and cost are comparable. Lifetime table counters
(``n_tup_ins``…, ``COUNT_WRITE``) are not used: a table bulk-loaded once, or with years of history,
would look write-heavy against a read window of a few hours and get no index at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dbopt.advisor.select import WorkItem
from dbopt.targets.base import Data

WRITE_KINDS = ("insert", "update", "delete")


@dataclass(frozen=True)
class WriteCost(Data):
    """The write time a table's new indexes are weighed against, and where the figure came from."""

    table: str
    ms: float  # total time of the table's write statements in the measured window
    statements: int
    source: str


def is_write(item: WorkItem) -> bool:
    return item.parsed.kind in WRITE_KINDS


def write_costs(items: Sequence[WorkItem], tables: Iterable[str]) -> dict[str, WriteCost]:
    """Per table of ``tables`` (and per table written): its write statements' total time in the window."""
    found: dict[str, list[WorkItem]] = {}
    for it in items:
        if is_write(it) and it.parsed.written_table:
            found.setdefault(it.parsed.written_table, []).append(it)
    out: dict[str, WriteCost] = {}
    for table in dict.fromkeys([*tables, *found]):
        writes = found.get(table, [])
        if writes:
            sources = ", ".join(sorted({it.statement.source or "the given workload" for it in writes}))
            source = f"{len(writes)} write statement(s) from {sources}, same window as the reads"
        else:
            source = "no write statement on this table in the measured window (lifetime counters are not used)"
        out[table] = WriteCost(table, round(sum(it.weight_ms for it in writes), 3), len(writes), source)
    return out
