"""``EXPLAIN FORMAT=JSON`` of MariaDB 10.6+ and MySQL 8 (format version 1) → the common ``Explain``.

Both engines nest ``table`` objects (``table_name``, ``access_type``, ``key``, ``rows``, ``filtered``)
under ``query_block`` / ``nested_loop`` and wrappers that differ per engine (MariaDB: ``filesort``,
``read_sorted_file``, ``temporary_table``; MySQL 8: ``ordering_operation`` with ``using_filesort``,
``grouping_operation``, plus ``cost_info``). The tree is walked generically so either shape reduces
the same way.
"""

from __future__ import annotations

import math
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from dbopt.targets.base import Explain, Scan

# A key lookup or range read; "index" (a full index scan) and "ALL" read every row.
_KEYED = {
    "const",
    "eq_ref",
    "ref",
    "ref_or_null",
    "range",
    "index_merge",
    "fulltext",
    "unique_subquery",
    "index_subquery",
}
_FULL = {"ALL", "index"}
# Keys under which a plan holds another query block (subquery, derived table, union part):
# their tables are read but do not multiply the outer join's row estimate.
_INNER_BLOCK_HINTS = ("subquer", "materialized", "union")


def reduce_plan(doc: dict[str, Any], query: str) -> Explain:
    """The common shape of one ``EXPLAIN FORMAT=JSON`` document; ``query`` resolves table aliases."""
    aliases = _aliases(query)
    found: list[tuple[Scan, bool]] = []  # (scan, in the outermost block)
    sort = _walk(doc, aliases, found, outer=True)
    block = doc.get("query_block", {})
    outer = [s for s, is_outer in found if is_outer]
    est_rows = math.prod(s.est_rows for s in outer if s.est_rows is not None) if outer else None
    return Explain(
        scans=tuple(s for s, _ in found),
        total_cost=_number(block.get("cost_info", {}).get("query_cost", block.get("cost"))),
        est_rows=est_rows,
        sort=sort,
        raw=doc,
    )


def _walk(node: Any, aliases: dict[str, str], found: list[tuple[Scan, bool]], outer: bool) -> bool:
    """Collect scans depth-first; True if any filesort was seen."""
    sort = False
    if isinstance(node, list):
        for item in node:
            sort |= _walk(item, aliases, found, outer)
        return sort
    if not isinstance(node, dict):
        return False
    for key, value in node.items():
        if key == "filesort" or (key == "using_filesort" and value is True):
            sort = True
        if key == "table" and isinstance(value, dict) and "table_name" in value:
            found.append((_scan(value, aliases), outer))
        inner = outer and not any(h in key for h in _INNER_BLOCK_HINTS)
        sort |= _walk(value, aliases, found, inner)
    return sort


def _scan(table: dict[str, Any], aliases: dict[str, str]) -> Scan:
    access_type = str(table.get("access_type", "")).removeprefix("hash_")  # MariaDB hash joins
    if access_type in _FULL:
        access = "seq"
    elif access_type in _KEYED:
        access = "index_only" if table.get("using_index") else "index"
    else:  # "system" (a one-row table) and anything newer
        access = "other"
    rows = _number(table.get("rows_examined_per_scan", table.get("rows")))
    filtered = _number(table.get("filtered"))
    if rows is not None and filtered is not None:
        rows = rows * filtered / 100.0
    cost_info = table.get("cost_info", {})
    cost = _number(table.get("cost"))
    if cost is None and cost_info:
        cost = (_number(cost_info.get("read_cost")) or 0.0) + (_number(cost_info.get("eval_cost")) or 0.0)
    name = str(table["table_name"])
    return Scan(table=aliases.get(name, name), access=access, index=table.get("key"), est_rows=rows, est_cost=cost)


def _number(value: Any) -> float | None:
    """MySQL 8 writes costs as strings ("1.25"), MariaDB as numbers."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _aliases(query: str) -> dict[str, str]:
    """alias → table name, so a scan of ``t1`` in ``FROM orders t1`` reports ``orders``."""
    try:
        tree = sqlglot.parse_one(query, read="mysql")
    except SqlglotError:
        return {}
    return {t.alias: t.name for t in tree.find_all(exp.Table) if t.alias and t.name}


def reduce_tabular(rows: list[dict[str, Any]], query: str) -> Explain:
    """The common shape from classic tabular ``EXPLAIN`` rows (table, type, key, rows, Extra, …).

    The fallback for MariaDB 10.x, whose JSON writer does not escape ``"`` inside names and
    conditions (a string literal or identifier holding ``"`` yields invalid JSON).
    """
    aliases = _aliases(query)
    scans, outer = [], []
    for row in rows:
        if not row.get("table"):
            continue  # "No tables used", "Impossible WHERE" …
        extra = [part.strip() for part in str(row.get("Extra") or "").split(";")]
        table = {
            "table_name": row["table"],
            "access_type": row.get("type"),
            "key": row.get("key"),
            "rows": row.get("rows"),
            "filtered": row.get("filtered"),
            "using_index": "Using index" in extra,
        }
        scan = _scan(table, aliases)
        scans.append(scan)
        if row.get("select_type") in ("SIMPLE", "PRIMARY"):
            outer.append(scan)
    return Explain(
        scans=tuple(scans),
        est_rows=math.prod(s.est_rows for s in outer if s.est_rows is not None) if outer else None,
        sort=any("Using filesort" in str(row.get("Extra") or "") for row in rows),
        raw=rows,
    )
