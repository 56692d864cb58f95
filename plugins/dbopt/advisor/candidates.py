"""Candidate indexes for one table access: equality columns, then one range, then the sort.

Column order follows the rule depesz argued for (and the standalone advisors got wrong): equality
columns first (most selective first), then at most one range column, or the ORDER BY columns when
the sort can be read from the index. Traps are filtered here, before anything is costed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dbopt.advisor.parse import TableUsage
from dbopt.advisor.policy import AdvisorPolicy
from dbopt.advisor.selectivity import eq_selectivity, is_unselective, top_frequency
from dbopt.targets.base import Data, Dialect, IndexInfo, IndexSpec, TableStats
from dbopt.targets.common import covers
from dbopt.targets.dialects import traits


@dataclass(frozen=True)
class Rejection(Data):
    """An index the advisor considered and refused, and why (reported, never built)."""

    table: str
    columns: tuple[str, ...]
    reason: str


def as_index_info(spec: IndexSpec) -> IndexInfo:
    return IndexInfo(
        table=spec.table,
        name=spec.name,
        columns=spec.columns,
        descending=spec.descending,
        include=spec.include,
        unique=spec.unique,
    )


def served_by_existing(spec: IndexSpec, existing: Sequence[IndexInfo]) -> IndexInfo | None:
    """An existing index that makes ``spec`` pointless: identical, or spec is its left prefix.

    A btree read backwards serves the opposite directions, so the flipped spec counts too.
    """
    mine = as_index_info(spec)
    flipped = IndexInfo(
        table=spec.table,
        name=spec.name,
        columns=spec.columns,
        descending=tuple(not spec.is_descending(i) for i in range(len(spec.columns))),
        include=spec.include,
    )
    return next((ix for ix in existing if covers(ix, mine) or covers(ix, flipped)), None)


def generate(
    usage: TableUsage,
    stats: TableStats,
    existing: Sequence[IndexInfo],
    policy: AdvisorPolicy,
    dialect: Dialect,
) -> tuple[list[IndexSpec], list[Rejection]]:
    """Candidate indexes for one table access, and the ones refused (tiny table, unselective, …)."""
    rejected = [
        Rejection(usage.table, (col,), f"not indexable with a btree: {why}")
        for col, why in usage.non_sargable
        if col not in usage.keyable()
    ]
    if not usage.keyable():
        return [], rejected
    if stats.rows < policy.min_table_rows:
        rejected.append(Rejection(usage.table, tuple(sorted(usage.keyable())), f"table too small ({stats.rows} rows)"))
        return [], rejected

    shapes = _key_shapes(usage, stats, policy)
    specs: dict[IndexSpec, None] = {}
    for columns, descending in shapes:
        reason = _trap(columns, usage, stats, policy) or _led_by_key(columns, existing)
        if reason:
            rejected.append(Rejection(usage.table, columns, reason))
            continue
        for spec in _with_covering(usage, stats, columns, descending, policy, dialect):
            if (have := served_by_existing(spec, existing)) is None:
                specs.setdefault(spec)
            elif spec.columns == columns and not spec.include:
                rejected.append(Rejection(usage.table, columns, f"already served by the existing index {have.name}"))
    return list(specs), rejected


def _led_by_key(columns: tuple[str, ...], existing: Sequence[IndexInfo]) -> str | None:
    """Why a key starting with a primary or unique key's full column list is pointless, or None.

    Such a key finds at most one row from its leading columns, as the existing key already does:
    the extra columns only add bytes and write cost (MariaDB's ``sessions(id, status, rating)``).
    """
    lowered = [c.lower() for c in columns]
    for ix in existing:
        keys = [c.lower() for c in ix.columns]
        plain_key = (ix.primary or ix.unique) and ix.valid and not ix.partial and not ix.expression and keys
        if plain_key and len(keys) <= len(lowered) and set(lowered[: len(keys)]) == set(keys):
            kind = "primary key" if ix.primary else f"unique key {ix.name}"
            return f"led by the {kind} ({', '.join(ix.columns)}): it already finds the row"
    return None


def _key_shapes(
    usage: TableUsage, stats: TableStats, policy: AdvisorPolicy
) -> list[tuple[tuple[str, ...], tuple[bool, ...]]]:
    """(columns, descending flags) of every key layout worth costing for this access."""
    # Join columns are looked up by equality once per outer row, so they rank with equality columns.
    eq = sorted(dict.fromkeys((*usage.equality, *usage.join)), key=lambda c: eq_selectivity(stats, c))
    eq = eq[: policy.max_key_columns]
    ranges = [c for c in usage.range if c not in eq][:2]
    # Sort keys an equality already fixes are constants: the index needs only the rest.
    order = [(c, d) for c, d in usage.order_by if c not in eq]
    if not order and usage.group_by:
        order = [(c, False) for c in usage.group_by if c not in eq]

    layouts: list[tuple[list[str], list[bool]]] = [([c], [False]) for c in eq]
    layouts += [([r], [False]) for r in ranges]
    if len(eq) > 1:
        layouts.append((eq, [False] * len(eq)))
    if eq:
        layouts += [([*eq, r], [False] * (len(eq) + 1)) for r in ranges]
    if order:
        # DESC keys where the ORDER BY says DESC, so the index order is exactly the requested one.
        keys = [*eq, *(c for c, _ in order)]
        if len(set(keys)) == len(keys):
            layouts.append((keys, [False] * len(eq) + [d for _, d in order]))
    out = []
    for cols, desc in layouts:
        cols, desc = cols[: policy.max_key_columns], desc[: policy.max_key_columns]
        out.append((tuple(cols), tuple(desc) if any(desc) else ()))
    return list(dict.fromkeys(out))


def _trap(columns: tuple[str, ...], usage: TableUsage, stats: TableStats, policy: AdvisorPolicy) -> str | None:
    """Why an index with this key would not help, or None."""
    lead = columns[0]
    if not is_unselective(stats, lead, policy.max_leading_top_frequency):
        return None
    sort_cols = {c for c, _ in usage.order_by} | set(usage.group_by)
    for col in columns[1:]:
        selective_eq = col in usage.equality or col in usage.join
        if selective_eq and not is_unselective(stats, col, policy.max_leading_top_frequency):
            return None
        if col in usage.range or (col in sort_cols and usage.has_limit):
            return None
    top = top_frequency(stats, lead)
    share = f"its most common value is in {top:.0%} of rows" if top is not None else "it has very few distinct values"
    return f"leading column {lead!r} is unselective ({share}) and no selective column follows"


def _with_covering(
    usage: TableUsage,
    stats: TableStats,
    columns: tuple[str, ...],
    descending: tuple[bool, ...],
    policy: AdvisorPolicy,
    dialect: Dialect,
) -> list[IndexSpec]:
    """The plain index, plus a covering variant when the query reads only a few more columns."""
    plain = IndexSpec(table=usage.table, columns=columns, descending=descending)
    extra = tuple(c for c in usage.referenced if c not in columns)
    complete = {*usage.equality, *usage.join} <= set(columns)  # only a full-key index is worth widening
    if usage.all_columns or not complete or not extra or len(extra) > policy.max_include_columns:
        return [plain]
    if any((w := stats.widths.get(c)) is not None and w > policy.max_covering_width for c in extra):
        return [plain]  # a wide column (text) would make the index much bigger for little gain
    if traits(dialect).include_columns and policy.allow_include:
        return [plain, IndexSpec(table=usage.table, columns=columns, descending=descending, include=extra)]
    if len(columns) + len(extra) > policy.max_key_columns:
        return [plain]
    wide_desc = (*descending, *(False,) * len(extra)) if descending else ()
    return [plain, IndexSpec(table=usage.table, columns=columns + extra, descending=wide_desc)]
