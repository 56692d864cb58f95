"""Plain-text tables and checks for the benchmark output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dbopt.advisor.candidates import as_index_info
from dbopt.targets.base import IndexSpec
from dbopt.targets.common import covers

# The demo's traps (include/demo/workload.yaml): what no index may be built for.
TRAPS = {
    "server": {"tables": {"regions"}, "columns": {("sessions", "status"), ("audit_log", "details")}},
    "sqlite": {"tables": {"companies"}, "columns": {("worklogs", "status"), ("worklogs", "comment")}},
}


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Left-aligned text columns; numbers right-aligned."""
    cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    numeric = [all(_is_number(r.get(c)) for r in rows) and bool(rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    return "\n".join([line(list(columns)), "  ".join("-" * w for w in widths), *(line(r) for r in cells)]).rstrip()


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024 / 1024:.1f} MB"


def key(spec: IndexSpec) -> str:
    cols = [f"{c} DESC" if spec.is_descending(i) else c for i, c in enumerate(spec.columns)]
    text = f"{spec.table}({', '.join(cols)})"
    return text + (f" INCLUDE ({', '.join(spec.include)})" if spec.include else "")


def redundant_pairs(specs: Iterable[IndexSpec]) -> list[str]:
    """Pairs where one index duplicates another or is its left prefix (a redundant index)."""
    items = list(specs)
    return [
        f"{key(a)} is covered by {key(b)}"
        for a in items
        for b in items
        if a is not b and covers(as_index_info(b), as_index_info(a))
    ]


def trap_violations(family: str, specs: Iterable[IndexSpec]) -> list[str]:
    """Indexes that serve a trap: a tiny table, or leading with an unselective / LIKE '%…%' column."""
    traps = TRAPS[family]
    out = []
    for s in specs:
        if s.table in traps["tables"] or (s.table, s.columns[0]) in traps["columns"]:
            out.append(key(s))
    return out
