"""Estimated cost of a workload statement with a set of hypothetical indexes.

Three methods, and every estimate says which one produced it:

* ``hypopg``: PostgreSQL plans the query with HypoPG hypothetical indexes (``Target.whatif``) and
  the planner's ``total_cost`` is compared before and after.
* ``sqlite-expert``: SQLite re-plans the query with the candidates on a scratch copy of the schema
  (``Target.whatif`` returns a plan without costs, like the CLI's ``.expert``). The plan tells
  *whether* an index is used; the heuristic below says how much it saves.
* ``heuristic``: engines without what-if plans (MySQL/MariaDB). The model, in "row units":

  - full scan: ``N`` (every row read once);
  - index access: ``log2(N) + N·s·(1 + F)`` where ``s`` is the selectivity of the usable key
    prefix (equality columns, then one range column) and ``F = 3`` is the extra cost of fetching
    each matching row from the table (0 when the index covers every column read);
  - a join column in the key turns the access into ``P`` lookups, ``P`` = estimated rows of the
    smallest other table occurrence of the statement after its own filters;
  - ORDER BY/GROUP BY not served by the access adds ``R·log2(R)·0.1`` for ``R`` result rows; a sort
    served by the index with a LIMIT stops after ``limit / residual selectivity`` rows;
  - per table occurrence the cheapest access counts; the statement costs the sum.

Existing valid, non-partial, non-expression indexes are part of every estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dbopt.advisor.parse import ParsedStatement, TableUsage
from dbopt.advisor.selectivity import RANGE_SELECTIVITY, eq_selectivity
from dbopt.targets.base import Explain, IndexInfo, IndexSpec, TableStats, Target
from dbopt.targets.dialects import traits

FETCH_FACTOR = 3.0
SORT_FACTOR = 0.1
DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class Estimate:
    """One statement's estimated cost under one index configuration."""

    cost: float
    method: str  # "hypopg" | "sqlite-expert" | "heuristic"
    used: frozenset[str] = frozenset()  # names of the indexes (real or hypothetical) the plan uses


@dataclass(frozen=True)
class _Key:
    """An index as the heuristic sees it: key columns, directions, stored columns."""

    table: str
    name: str
    columns: tuple[str, ...]
    descending: tuple[bool, ...]
    stored: frozenset[str]

    @classmethod
    def of(cls, ix: IndexInfo | IndexSpec) -> _Key:
        desc = ix.descending or (False,) * len(ix.columns)
        return cls(ix.table, ix.name, ix.columns, tuple(desc), frozenset((*ix.columns, *ix.include)))


class Coster:
    """Costs statements for one target; one instance per advise() run."""

    def __init__(
        self,
        target: Target,
        stats: dict[str, TableStats],
        existing: Sequence[IndexInfo],
    ) -> None:
        self.target = target
        self.stats = stats
        self.existing = [
            _Key.of(ix) for ix in existing if ix.valid and not ix.partial and not ix.expression and ix.columns
        ]
        self.whatif_calls = 0
        self._memo: dict[tuple[str, frozenset[IndexSpec]], Estimate] = {}

    def cost(self, text: str, parsed: ParsedStatement, hypothetical: Sequence[IndexSpec]) -> Estimate:
        """Estimated cost of ``text`` as if ``hypothetical`` existed next to the real indexes.

        Raises TargetError when the engine cannot plan the statement (or rejects an index).
        """
        key = (text, frozenset(hypothetical))
        if key not in self._memo:
            self._memo[key] = self._cost(text, parsed, sorted(hypothetical, key=lambda s: s.name))
        return self._memo[key]

    def optimistic(self, parsed: ParsedStatement, hypothetical: Sequence[IndexSpec]) -> float | None:
        """A lower bound of ``cost`` without asking the engine, where the heuristic prices the plan.

        SQLite's what-if plan only says which candidates the planner would use and the heuristic
        prices them, so the heuristic with every candidate used is a bound; MySQL's estimate is that
        heuristic. PostgreSQL's planner prices its own plans: None.
        """
        if traits(self.target.dialect).whatif == "priced":
            return None
        return heuristic_cost(parsed, self.stats, self.existing + [_Key.of(s) for s in hypothetical])

    def _cost(self, text: str, parsed: ParsedStatement, hypothetical: Sequence[IndexSpec]) -> Estimate:
        whatif = traits(self.target.dialect).whatif
        if whatif == "priced":
            plan = self._plan(text, hypothetical)
            if plan is not None and plan.total_cost is not None:
                return Estimate(plan.total_cost, "hypopg", frozenset(plan.indexes_used()))
        elif whatif == "used" and hypothetical:
            plan = self._plan(text, hypothetical)
            if plan is not None:
                # the planner decides which candidates it would use; the model prices them
                kept = [s for s in hypothetical if s.name in plan.indexes_used()]
                return self._heuristic(parsed, kept, "sqlite-expert")
        return self._heuristic(parsed, hypothetical, "heuristic")

    def _heuristic(self, parsed: ParsedStatement, hypothetical: Sequence[IndexSpec], method: str) -> Estimate:
        keys = self.existing + [_Key.of(s) for s in hypothetical]
        return Estimate(heuristic_cost(parsed, self.stats, keys), method, _chosen(parsed, self.stats, keys))

    def _plan(self, text: str, hypothetical: Sequence[IndexSpec]) -> Explain | None:
        self.whatif_calls += 1
        return self.target.whatif(text, list(hypothetical)) if hypothetical else self.target.explain(text)


# --- heuristic model --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Access:
    cost: float
    index: str | None


def heuristic_cost(parsed: ParsedStatement, stats: dict[str, TableStats], keys: Sequence[_Key]) -> float:
    return sum(a.cost for a in _accesses(parsed, stats, keys))


def _chosen(parsed: ParsedStatement, stats: dict[str, TableStats], keys: Sequence[_Key]) -> frozenset[str]:
    return frozenset({a.index for a in _accesses(parsed, stats, keys) if a.index})


def _accesses(parsed: ParsedStatement, stats: dict[str, TableStats], keys: Sequence[_Key]) -> list[_Access]:
    usages = [u for u in parsed.usages if u.table in stats]
    filtered = [_filtered_rows(u, stats[u.table]) for u in usages]
    out = []
    for i, usage in enumerate(usages):
        others = [f for j, f in enumerate(filtered) if j != i]
        probes = max(1.0, min(others)) if others and usage.join else None
        table_keys = [k for k in keys if k.table.lower() == usage.table.lower()]
        out.append(_best_access(usage, stats[usage.table], table_keys, probes))
    return out


def _filtered_rows(usage: TableUsage, stats: TableStats) -> float:
    sel = math.prod(eq_selectivity(stats, c) for c in usage.equality)
    sel *= RANGE_SELECTIVITY ** min(len(usage.range), 1)
    return max(1.0, stats.rows * sel)


def _best_access(usage: TableUsage, stats: TableStats, keys: Sequence[_Key], probes: float | None) -> _Access:
    n = max(float(stats.rows), 1.0)
    out_rows = _filtered_rows(usage, stats)
    sorted_out = bool(usage.order_by or usage.group_by)
    sort_cost = out_rows * math.log2(out_rows + 1) * SORT_FACTOR if sorted_out else 0.0
    best = _Access(n + sort_cost, None)
    for key in keys:
        cost = _index_cost(usage, stats, key, probes, n, out_rows, sort_cost)
        if cost is not None and cost < best.cost:
            best = _Access(cost, key.name)
    return best


def _index_cost(
    usage: TableUsage,
    stats: TableStats,
    key: _Key,
    probes: float | None,
    n: float,
    out_rows: float,
    sort_cost: float,
) -> float | None:
    sel, matched, fixed, lookups = 1.0, 0, 0, 1.0
    for col in key.columns:
        if col in usage.equality:
            sel *= eq_selectivity(stats, col)
            fixed += 1
        elif col in usage.join and probes is not None:
            sel *= eq_selectivity(stats, col)
            lookups = probes
            fixed += 1
        elif col in usage.range:
            sel *= RANGE_SELECTIVITY
            matched += 1
            break
        else:
            break
        matched += 1
    sort_served = _serves_sort(usage, key, fixed)
    if matched == 0 and not (sort_served and usage.has_limit):
        return None
    covering = not usage.all_columns and set(usage.referenced) <= key.stored
    per_row = 1.0 + (0.0 if covering else FETCH_FACTOR)
    rows = n * sel
    if sort_served and usage.has_limit and lookups == 1.0:
        residual = min(1.0, out_rows / max(rows, 1.0))
        rows = min(rows, (usage.limit or DEFAULT_LIMIT) / max(residual, 1e-9))
    return lookups * (math.log2(n + 1) + rows * per_row) + (0.0 if sort_served else sort_cost)


def _serves_sort(usage: TableUsage, key: _Key, fixed: int) -> bool:
    """The key, after its equality-fixed prefix, yields rows in the ORDER BY (or GROUP BY) order."""
    if usage.order_by:
        wanted = [(c, d) for c, d in usage.order_by if c not in usage.equality]
    elif usage.group_by:
        wanted = [(c, None) for c in usage.group_by if c not in usage.equality]
    else:
        return False
    rest = list(zip(key.columns[fixed:], key.descending[fixed:], strict=True))
    if len(rest) < len(wanted) or [c for c, _ in rest[: len(wanted)]] != [c for c, _ in wanted]:
        return False
    flips = {d != want for (_, d), (_, want) in zip(rest, wanted, strict=False) if want is not None}
    return len(flips) <= 1  # all same direction, or all reversed (a backward scan)
