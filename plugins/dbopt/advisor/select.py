"""Pick one index set for the whole workload: greedy by benefit per byte (the "Extend" idea).

Each statement weighs its share of total time (calls × mean time = ``total_ms``). A candidate's
benefit is the time it is expected to save: for every statement it serves,
``total_ms × (cost_now − cost_with_it) / cost_without_any_new_index``. After each pick the
statements are re-costed with the picks in place, so a second index serving the same query earns
only what it adds (marginal benefit). Lazy evaluation (CELF) keeps the number of what-if calls low:
a candidate's benefit can only fall as picks accumulate, so a stale score is an upper bound.

A pick must also pass:

* the storage budget (estimated size, see :func:`estimated_size`) and the per-table limit;
* ``min_improvement``: the cost of the statements it serves falls by at least that share;
* ``min_time_saved``: a new index saves at least that share of its statements' time. A pick that
  widens an earlier one (starts with its keys, e.g. ``(a, b)`` after ``(a)``) replaces it and needs
  only ``min_improvement`` (as Dexter's rule for a second column), so a composite index wins over a
  single-column one when it cuts the cost of what that one serves by that much more;
* a write penalty: ``write_penalty × write time of its table`` is subtracted from the benefit.
  Write time is the total time of the workload's INSERT/UPDATE/DELETE statements on the table,
  or, when the workload has none, ``TableStats.writes × ms_per_row_write``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from dbopt.advisor.candidates import as_index_info
from dbopt.advisor.cost import Coster, Estimate
from dbopt.advisor.parse import ParsedStatement
from dbopt.advisor.policy import AdvisorPolicy
from dbopt.targets.base import Dialect, IndexSpec, Statement, TableStats, TargetError
from dbopt.targets.common import covers

# Bytes per index entry besides the key values: PostgreSQL 8-byte tuple header (holds the heap TID)
# + 4-byte line pointer + alignment; InnoDB record header + a copy of the primary key; SQLite cell
# pointer + record header + rowid.
ENTRY_OVERHEAD = {"postgres": 16, "mysql": 20, "sqlite": 12}
LEAF_FILL = 0.9  # btree leaves are ~90% full after a build (PostgreSQL's default fillfactor)
MIN_COLUMN_WIDTH, MAX_COLUMN_WIDTH, DEFAULT_COLUMN_WIDTH = 4, 64, 8


def estimated_size(spec: IndexSpec, stats: TableStats, dialect: Dialect) -> int:
    """``rows × (Σ column widths + entry overhead) / leaf fill``.

    A column's width is the table's average row width (size / rows) over its column count, clamped
    to 4..64 bytes: the catalogs the targets read give no per-column widths.
    """
    rows = max(stats.rows, 0)
    if stats.size_bytes and rows and stats.columns:
        width = stats.size_bytes / rows / len(stats.columns)
        width = min(max(width, MIN_COLUMN_WIDTH), MAX_COLUMN_WIDTH)
    else:
        width = DEFAULT_COLUMN_WIDTH
    entry = width * (len(spec.columns) + len(spec.include)) + ENTRY_OVERHEAD[dialect]
    return int(rows * entry / LEAF_FILL)


@dataclass
class WorkItem:
    """A statement ready for costing: its text, its parse, its weight (total ms)."""

    statement: Statement
    text: str
    parsed: ParsedStatement

    @property
    def weight_ms(self) -> float:
        return self.statement.total_ms or self.statement.calls * self.statement.mean_ms


@dataclass(frozen=True)
class Served:
    """What one picked index does for one statement (costs in the method's units)."""

    item: int
    before: float
    after: float
    method: str


@dataclass
class Pick:
    spec: IndexSpec
    size_bytes: int
    benefit_ms: float
    penalty_ms: float
    served: list[Served] = field(default_factory=list)


@dataclass
class Selection:
    picks: list[Pick]
    baseline: dict[int, Estimate]
    final: dict[int, Estimate]


def serves(spec: IndexSpec, parsed: ParsedStatement) -> bool:
    """Could the index help this statement at all? (its leading column is filtered, joined or sorted on)"""
    lead = spec.columns[0].lower()
    return any(
        u.table.lower() == spec.table.lower() and lead in {c.lower() for c in u.keyable()} for u in parsed.usages
    )


class _Search:
    def __init__(
        self,
        items: Sequence[WorkItem],
        candidates: Sequence[IndexSpec],
        coster: Coster,
        stats: dict[str, TableStats],
        policy: AdvisorPolicy,
    ) -> None:
        self.items = items
        self.coster = coster
        self.policy = policy
        self.relevant = {c: [i for i, it in enumerate(items) if serves(c, it.parsed)] for c in candidates}
        self.chosen: list[IndexSpec] = []
        self.baseline = {i: self.estimate(i, []) for i in sorted({i for v in self.relevant.values() for i in v})}
        self.current = dict(self.baseline)
        self.size = {c: estimated_size(c, stats[c.table], coster.target.dialect) for c in candidates}
        self.write_ms = _write_ms(items, stats, policy)

    def estimate(self, i: int, specs: Sequence[IndexSpec]) -> Estimate:
        item = self.items[i]
        return self.coster.cost(item.text, item.parsed, [s for s in specs if serves(s, item.parsed)])

    def replaced_by(self, cand: IndexSpec) -> list[IndexSpec]:
        """Earlier picks ``cand`` makes redundant (it starts with their keys): picking it replaces them."""
        info = as_index_info(cand)
        return [c for c in self.chosen if covers(info, as_index_info(c))]

    def evaluate(self, cand: IndexSpec) -> tuple[float, float, list[Served]]:
        """(benefit ms, penalty ms, statements served) of adding ``cand`` to the current picks."""
        replaced = self.replaced_by(cand)
        config = [c for c in self.chosen if c not in replaced] + [cand]
        served, benefit, before_sum, after_sum, weight = [], 0.0, 0.0, 0.0, 0.0
        for i in self.relevant[cand]:
            now, base = self.current[i], self.baseline[i]
            try:
                new = self.estimate(i, config)
            except TargetError:  # e.g. HypoPG refuses this index: it cannot be judged, so it is not picked
                return 0.0, 0.0, []
            if cand.name not in new.used or new.cost >= now.cost or base.cost <= 0:
                continue
            served.append(Served(i, base.cost, new.cost, new.method))
            benefit += self.items[i].weight_ms * (now.cost - new.cost) / base.cost
            before_sum += now.cost
            after_sum += new.cost
            weight += self.items[i].weight_ms
        # A new index must also save real time; widening a pick (Dexter's second-column rule) only
        # has to cut the cost of its statements further by min_improvement.
        if (
            not served
            or (before_sum - after_sum) / before_sum < self.policy.min_improvement
            or (not replaced and benefit < self.policy.min_time_saved * weight)
        ):
            return 0.0, 0.0, []
        # widening an earlier pick adds no index to maintain
        penalty = 0.0 if replaced else self.policy.write_penalty * self.write_ms.get(cand.table, 0.0)
        return benefit, penalty, served

    def added_bytes(self, cand: IndexSpec) -> int:
        return self.size[cand] - sum(self.size[c] for c in self.replaced_by(cand))

    def allowed(self, cand: IndexSpec, used_bytes: int) -> bool:
        if cand in self.chosen or used_bytes + self.added_bytes(cand) > self.policy.storage_budget_bytes:
            return False
        on_table = sum(1 for c in self.chosen if c.table == cand.table) - len(self.replaced_by(cand))
        if on_table >= self.policy.max_indexes_per_table:
            return False
        info = as_index_info(cand)
        return not any(covers(as_index_info(c), info) for c in self.chosen)

    def run(self) -> list[Pick]:
        picks: dict[IndexSpec, Pick] = {}
        # heap of (-score upper bound, tiebreak, candidate, round evaluated)
        heap = [(-float("inf"), c.name, c, -1) for c in self.relevant if self.relevant[c]]
        heapq.heapify(heap)
        rnd, used_bytes = 0, 0
        while heap and len(picks) < self.policy.max_recommendations:
            _neg, name, cand, seen = heapq.heappop(heap)
            if not self.allowed(cand, used_bytes):
                continue
            benefit, penalty, served = self.evaluate(cand)
            if seen != rnd:  # stale score: re-queue with the current one
                if benefit > penalty:
                    heapq.heappush(heap, (-(benefit - penalty) / max(self.added_bytes(cand), 1), name, cand, rnd))
                continue
            used_bytes += self.added_bytes(cand)
            for old in self.replaced_by(cand):
                self.chosen.remove(old)
                earlier = picks.pop(old)
                benefit += earlier.benefit_ms
                penalty += earlier.penalty_ms
            picks[cand] = Pick(cand, self.size[cand], benefit, penalty, served)
            self.chosen.append(cand)
            for i in self.current:
                self.current[i] = self.estimate(i, self.chosen)
            rnd += 1
        return [picks[c] for c in self.chosen]


def select(
    items: Sequence[WorkItem],
    candidates: Sequence[IndexSpec],
    coster: Coster,
    stats: dict[str, TableStats],
    policy: AdvisorPolicy,
) -> Selection:
    """Greedy workload-wide choice; ``final`` holds each statement's estimate with all picks in place."""
    search = _Search(items, candidates, coster, stats, policy)
    picks = search.run()
    for pick in picks:
        pick.served = [
            Served(i, search.baseline[i].cost, est.cost, est.method)
            for i in search.relevant[pick.spec]
            if pick.spec.name in (est := search.current[i]).used and est.cost < search.baseline[i].cost
        ]
    return Selection(picks, search.baseline, search.current)


def _write_ms(items: Sequence[WorkItem], stats: dict[str, TableStats], policy: AdvisorPolicy) -> dict[str, float]:
    out: dict[str, float] = {}
    for it in items:
        table = it.parsed.written_table
        if it.parsed.kind in ("insert", "update", "delete") and table:
            out[table] = out.get(table, 0.0) + it.weight_ms
    for table, st in stats.items():
        if table not in out and st.writes:
            out[table] = st.writes * policy.ms_per_row_write
    return out
