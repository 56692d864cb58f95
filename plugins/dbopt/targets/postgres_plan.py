"""PostgreSQL ``EXPLAIN (FORMAT JSON)`` output reduced to the common ``Explain`` shape."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dbopt.targets.base import Explain, Scan

_ACCESS = {"Seq Scan": "seq", "Index Scan": "index", "Index Only Scan": "index_only"}
_SORTS = ("Sort", "Incremental Sort")


def plan_to_explain(raw: Any) -> Explain:
    """Reduce an ``EXPLAIN (FORMAT JSON)`` result to the common ``Explain`` shape."""
    top = raw[0]["Plan"]
    scans: list[Scan] = []
    sort = False

    def walk(node: dict[str, Any]) -> None:
        nonlocal sort
        kind = node["Node Type"]
        sort = sort or kind in _SORTS
        if "Relation Name" in node:
            table, rows, cost = node["Relation Name"], node.get("Plan Rows"), node.get("Total Cost")
            if kind == "Bitmap Heap Scan":
                names = list(dict.fromkeys(_bitmap_index_names(node))) or [None]
                scans.extend(Scan(table, "bitmap", name, rows, cost) for name in names)
            else:
                scans.append(Scan(table, _ACCESS.get(kind, "other"), node.get("Index Name"), rows, cost))
        for child in node.get("Plans", ()):
            walk(child)

    walk(top)
    return Explain(tuple(scans), top.get("Total Cost"), top.get("Plan Rows"), sort, raw)


def _bitmap_index_names(node: dict[str, Any]) -> Iterable[str]:
    for child in node.get("Plans", ()):
        if child["Node Type"] == "Bitmap Index Scan":
            yield child["Index Name"]
        else:  # BitmapAnd / BitmapOr
            yield from _bitmap_index_names(child)
