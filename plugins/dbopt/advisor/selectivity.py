"""Selectivity estimates from TableStats (distinct counts, most-common-value frequency)."""

from __future__ import annotations

from dbopt.targets.base import TableStats

# Fraction of rows an open or closed range predicate keeps when the bound is unknown
# (PostgreSQL's planner uses 1/3 for open inequalities and 0.005 for BETWEEN on a placeholder;
# 0.1 sits between and keeps the ranking of candidates sane on every engine).
RANGE_SELECTIVITY = 0.1
# An equality on a column we know nothing about.
UNKNOWN_EQ_SELECTIVITY = 0.05


def _lookup(values: dict[str, float | None], column: str) -> float | None:
    if column in values:
        return values[column]
    low = column.lower()
    return next((v for k, v in values.items() if k.lower() == low), None)


def top_frequency(stats: TableStats, column: str) -> float | None:
    return _lookup(stats.top_frequency, column)


def eq_selectivity(stats: TableStats, column: str) -> float:
    """Expected fraction of rows an equality on ``column`` matches: 1/distinct values.

    That is what PostgreSQL's planner assumes for a parameter of unknown value (a generic plan), so
    the heuristic and HypoPG rank candidates alike. Skew is handled where it matters, before costing:
    a leading column whose common value covers most rows is refused (``is_unselective``).
    """
    distinct = _lookup(stats.distinct, column)
    if distinct is not None and distinct < 0:  # PostgreSQL n_distinct < 0: a fraction of the rows
        distinct = -distinct * max(stats.rows, 1)
    if distinct:
        return 1.0 / max(distinct, 1.0)
    top = top_frequency(stats, column)
    return top if top is not None else UNKNOWN_EQ_SELECTIVITY


def is_unselective(stats: TableStats, column: str, max_top_frequency: float) -> bool:
    """True when the column's most common value (or, unknown that, an average value) covers too many rows."""
    top = top_frequency(stats, column)
    if top is None:
        distinct = _lookup(stats.distinct, column)
        top = 1.0 / distinct if distinct and distinct > 0 else None
    return top is not None and top > max_top_frequency
