"""Pick one index set for the whole workload: greedy by benefit per byte (the "Extend" idea).

Each statement weighs its share of total time (calls × mean time = ``total_ms``). A candidate's
benefit is the time it is expected to save: for every statement it serves,
``total_ms × (cost_now − cost_with_it) / cost_without_any_new_index``. After each pick the
statements are re-costed with the picks in place, so a second index serving the same query earns
only what it adds (marginal benefit). Lazy evaluation (CELF) keeps the number of what-if calls low:
a candidate's benefit can only fall as picks accumulate, so a stale score is an upper bound; where
the cost model gives a lower bound of a statement's cost without a plan (SQLite, MySQL), the first
scores are such bounds too, so a candidate is planned only when it could be the next pick.

A pick must also pass:

* the storage budget (estimated size, see :func:`estimated_size`) and the per-table limit;
* ``min_improvement``: the cost of the statements it serves falls by at least that share;
* ``min_time_saved``: a new index saves at least that share of its statements' time. A pick that
  replaces earlier ones needs only ``min_improvement`` (as Dexter's rule for a second column), so a
  composite index wins over a narrower one when it cuts the cost of what that one serves by that
  much more. A candidate replaces an earlier pick when it widens it (starts with its keys, e.g.
  ``(a, b)`` after ``(a)``), or when with the candidate in place no statement's plan uses that pick
  any more (``(a, b, c DESC)`` after ``(c)`` for ``WHERE a = ? AND b = ? ORDER BY c DESC LIMIT n``:
  benefit per byte picks the small index first; the re-plan shows the wider one makes it dead weight);
* a write penalty: ``write_penalty × write time of its table`` is subtracted from the benefit.
  Write time is the total time of the workload's INSERT/UPDATE/DELETE statements on the table, in
  the same window as the reads (``dbopt.advisor.writes``).

Every candidate the search drops gets a verdict (``Selection.verdicts``): the reason a statement it
was meant for got no index.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dbopt.advisor.candidates import as_index_info
from dbopt.advisor.cost import Coster, Estimate
from dbopt.advisor.parse import ParsedStatement
from dbopt.advisor.policy import AdvisorPolicy
from dbopt.targets.base import Dialect, IndexSpec, Statement, TableStats, TargetError
from dbopt.targets.common import covers
from dbopt.targets.dialects import traits

# Bytes per index entry besides the key values: PostgreSQL 8-byte tuple header (holds the heap TID)
# + 4-byte line pointer + alignment; InnoDB record header + a copy of the primary key; SQLite cell
# pointer + record header + rowid.
LEAF_FILL = 0.9  # btree leaves are ~90% full after a build (PostgreSQL's default fillfactor)
MIN_COLUMN_WIDTH, MAX_COLUMN_WIDTH, DEFAULT_COLUMN_WIDTH = 4, 64, 8


def estimated_size(spec: IndexSpec, stats: TableStats, dialect: Dialect) -> int:
    """``rows × (Σ column widths + entry overhead) / leaf fill``.

    A column's width is its average stored width where the engine knows it (PostgreSQL's
    ``pg_stats.avg_width``: stable across VACUUM), else the table's average row width (size / rows)
    over its column count, clamped to 4..64 bytes.
    """
    entry = sum(column_width(stats, c) for c in (*spec.columns, *spec.include)) + traits(dialect).index_entry_overhead
    return int(max(stats.rows, 0) * entry / LEAF_FILL)


def column_width(stats: TableStats, column: str) -> float:
    """Average bytes of one value of ``column`` (known or estimated, see :func:`estimated_size`)."""
    known = next((w for c, w in stats.widths.items() if c.lower() == column.lower()), None)
    if known:
        return float(known)
    if stats.size_bytes and stats.rows > 0 and stats.columns:
        return min(max(stats.size_bytes / stats.rows / len(stats.columns), MIN_COLUMN_WIDTH), MAX_COLUMN_WIDTH)
    return DEFAULT_COLUMN_WIDTH


@dataclass
class WorkItem:
    """A statement ready for costing: its text, its parse, its weight (total ms)."""

    statement: Statement
    text: str
    parsed: ParsedStatement
    generic: bool = False  # parameters without values: planned as a generic plan

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


@dataclass(frozen=True)
class _Evaluation:
    """Adding one candidate to the current picks: what it saves, costs, serves and replaces."""

    benefit: float  # ms saved over the measured window
    penalty: float  # ms of index maintenance added
    served: list[Served]
    replaced: list[IndexSpec]  # earlier picks it makes redundant (widened or no longer used)
    added_bytes: int  # its size less the size of the picks it replaces
    after: dict[int, Estimate]  # the statements it was costed on, as estimated with it picked


@dataclass
class Selection:
    picks: list[Pick]
    baseline: dict[int, Estimate]
    final: dict[int, Estimate]
    # why a candidate was not picked: (code, reason); codes as in SkippedStatement
    verdicts: dict[IndexSpec, tuple[str, str]] = field(default_factory=dict)


def serves(spec: IndexSpec, parsed: ParsedStatement) -> bool:
    """Could the index help this statement at all? (its leading column is filtered, joined or sorted on)"""
    lead = spec.columns[0].lower()
    return any(
        u.table.lower() == spec.table.lower() and lead in {c.lower() for c in u.keyable()} for u in parsed.usages
    )


def _relevant(items: Sequence[WorkItem], shortlisted: Mapping[int, Sequence[IndexSpec]]) -> dict[IndexSpec, list[int]]:
    """Candidate → the statements it is costed on: those it serves whose own best candidates start
    with its leading column (see ``dbopt.advisor.shortlist``)."""
    leads = {i: {(s.table.lower(), s.columns[0].lower()) for s in specs} for i, specs in shortlisted.items()}
    candidates = dict.fromkeys(s for specs in shortlisted.values() for s in specs)
    return {
        c: [
            i
            for i in sorted(leads)
            if (c.table.lower(), c.columns[0].lower()) in leads[i] and serves(c, items[i].parsed)
        ]
        for c in candidates
    }


class _Search:
    def __init__(
        self,
        items: Sequence[WorkItem],
        shortlisted: Mapping[int, Sequence[IndexSpec]],
        coster: Coster,
        stats: dict[str, TableStats],
        policy: AdvisorPolicy,
        write_ms: Mapping[str, float],
    ) -> None:
        self.items = items
        self.coster = coster
        self.policy = policy
        self.relevant = _relevant(items, shortlisted)
        self.chosen: list[IndexSpec] = []
        self.baseline = {i: self.estimate(i, []) for i in sorted({i for v in self.relevant.values() for i in v})}
        self.current = dict(self.baseline)
        self.stats = stats
        self.size = {c: estimated_size(c, stats[c.table], coster.target.dialect) for c in self.relevant}
        self.write_ms = write_ms
        self.verdicts: dict[IndexSpec, tuple[str, str]] = {}

    def estimate(self, i: int, specs: Sequence[IndexSpec]) -> Estimate:
        item = self.items[i]
        return self.coster.cost(item.text, item.parsed, [s for s in specs if serves(s, item.parsed)])

    def estimate_with(self, i: int, cand: IndexSpec, config: Sequence[IndexSpec]) -> Estimate:
        """Statement ``i`` with ``cand`` added to the picks.

        A one-table statement reads that table through one index, so it costs the cheaper of its
        current plan and its plan with ``cand`` alone (AutoAdmin's atomic configurations): those
        plans are memoized, so later rounds of the search need no new what-if plans. A join is
        re-planned with the whole configuration.
        """
        item, now = self.items[i], self.current[i]
        if len(item.parsed.usages) != 1:
            return self.estimate(i, config)
        bound = self.coster.optimistic(item.parsed, [cand])
        if bound is not None and bound >= now.cost:
            return now  # cannot beat the current plan: no what-if plan needed
        alone = self.estimate(i, [cand])
        return alone if alone.cost < now.cost else now

    def first_bound(self, cand: IndexSpec) -> float:
        """An upper bound of ``cand``'s score before any pick, from cost lower bounds without plans.

        Where the engine's estimate has a lower bound (``Coster.optimistic``), the search evaluates a
        candidate with what-if plans only once its bound reaches the top of the queue; elsewhere the
        bound is infinite and every candidate is evaluated in the first round.
        """
        return (self._benefit_bound(cand) - self._penalty(cand)) / max(self.size[cand], 1)

    def _benefit_bound(self, cand: IndexSpec) -> float:
        benefit = 0.0
        for i in self.relevant[cand]:
            low = self.coster.optimistic(self.items[i].parsed, [cand])
            if low is None:
                return float("inf")
            base = self.baseline[i].cost
            if base > 0 and low < base:
                benefit += self.items[i].weight_ms * (base - low) / base
        return benefit

    def _penalty(self, cand: IndexSpec) -> float:
        return self.policy.write_penalty * self.write_ms.get(cand.table, 0.0)

    def widened_by(self, cand: IndexSpec) -> list[IndexSpec]:
        """Earlier picks ``cand`` starts with the keys of: it serves every lookup they serve."""
        info = as_index_info(cand)
        return [c for c in self.chosen if covers(info, as_index_info(c))]

    def refuse(self, cand: IndexSpec, code: str, why: str) -> None:
        self.verdicts[cand] = (code, why)

    def evaluate(self, cand: IndexSpec) -> _Evaluation | None:
        """What adding ``cand`` to the current picks does, or None (with a verdict) when it does not earn a place."""
        widened = self.widened_by(cand)
        config = [c for c in self.chosen if c not in widened] + [cand]
        served, benefit, before_sum, after_sum, weight = [], 0.0, 0.0, 0.0, 0.0
        used: set[str] = set()
        after: dict[int, Estimate] = {}
        for i in self.relevant[cand]:
            now, base = self.current[i], self.baseline[i]
            try:
                new = self.estimate_with(i, cand, config)
            except TargetError as err:  # e.g. HypoPG refuses this index: it cannot be judged, so it is not picked
                self.refuse(cand, "engine-refused", f"the engine refused the candidate: {err}")
                return None
            used |= new.used
            after[i] = new
            if cand.name not in new.used or new.cost >= now.cost or base.cost <= 0:
                continue
            served.append(Served(i, base.cost, new.cost, new.method))
            benefit += self.items[i].weight_ms * (now.cost - new.cost) / base.cost
            before_sum += now.cost
            after_sum += new.cost
            weight += self.items[i].weight_ms
        if not served:
            self.refuse(
                cand, "not-used", "with the other picks in place the planner would not use it, or it saves nothing"
            )
            return None
        replaced = widened + self._superseded(cand, config, used)
        # A new index must also save real time; replacing a pick (Dexter's second-column rule) only
        # has to cut the cost of its statements further by min_improvement.
        cut = (before_sum - after_sum) / before_sum
        if cut < self.policy.min_improvement:
            self.refuse(
                cand,
                "below-threshold",
                f"estimated gain below threshold: cost cut {cut:.0%} < {self.policy.min_improvement:.0%}",
            )
            return None
        if not replaced and benefit < self.policy.min_time_saved * weight:
            self.refuse(
                cand,
                "below-threshold",
                f"estimated gain below threshold: saves ~{benefit:.0f} ms of {weight:.0f} ms "
                f"(< {self.policy.min_time_saved:.0%})",
            )
            return None
        # replacing a pick adds no index to maintain
        penalty = 0.0 if replaced else self._penalty(cand)
        added = self.size[cand] - sum(self.size[c] for c in replaced)
        return _Evaluation(benefit, penalty, served, replaced, added, after)

    def _superseded(self, cand: IndexSpec, config: Sequence[IndexSpec], used: set[str]) -> list[IndexSpec]:
        """Picks on ``cand``'s table that no plan uses once ``cand`` is there.

        Only statements ``cand`` serves are re-planned (``used`` holds the indexes their new plans
        use); a pick some other statement uses stays.
        """
        mine = set(self.relevant[cand])
        return [
            c
            for c in config
            if c != cand
            and c.table == cand.table
            and c.name not in used
            and all(i in mine for i, est in self.current.items() if c.name in est.used)
        ]

    def misfit(self, cand: IndexSpec, ev: _Evaluation, used_bytes: int) -> tuple[str, str] | None:
        """Why it breaks the storage budget or the per-table limit (counting the picks it replaces), or None."""
        left = self.policy.storage_budget_bytes - used_bytes
        if ev.added_bytes > left:
            return (
                "budget",
                f"storage budget exhausted: needs ~{ev.added_bytes / 1e6:.1f} MB, {max(left, 0) / 1e6:.1f} MB left",
            )
        on_table = sum(1 for c in self.chosen if c.table == cand.table and c not in ev.replaced)
        if on_table >= self.policy.max_indexes_per_table:
            return "table-limit", f"limit of {self.policy.max_indexes_per_table} new index(es) on {cand.table} reached"
        return None

    def merge(self, picks: dict[IndexSpec, Pick]) -> None:
        """Replace pairs of picks on one table by one index serving the statements of both (index merging).

        The merged key is one pick's columns followed by the other's remaining ones (both orders are
        tried); it must be smaller than the two and keep all but ``merge_margin`` of the estimated
        time they save, re-planned on every statement that uses either.
        """
        merged_any = True
        while merged_any:
            merged_any = False
            for a, b in itertools.combinations(list(self.chosen), 2):
                if a.table != b.table or a.include or b.include:
                    continue
                for first, second in ((a, b), (b, a)):
                    if self._try_merge(first, second, picks):
                        merged_any = True
                        break
                if merged_any:
                    break

    def _try_merge(self, first: IndexSpec, second: IndexSpec, picks: dict[IndexSpec, Pick]) -> bool:
        extra = [i for i, c in enumerate(second.columns) if c not in first.columns]
        columns = (*first.columns, *(second.columns[i] for i in extra))
        if len(columns) > self.policy.max_key_columns:
            return False
        flags = (
            *(first.is_descending(i) for i in range(len(first.columns))),
            *(second.is_descending(i) for i in extra),
        )
        merged = IndexSpec(first.table, columns, flags if any(flags) else ())
        size = estimated_size(merged, self.stats[merged.table], self.coster.target.dialect)
        if size >= self.size[first] + self.size[second] or self.covering_pick(merged) not in (None, first, second):
            return False
        users = [i for i, est in self.current.items() if est.used & {first.name, second.name}]
        if not all(serves(merged, self.items[i].parsed) for i in users):
            return False  # its leading column is not filtered, joined or sorted on by some user: no plan needed
        config = [c for c in self.chosen if c not in (first, second)] + [merged]
        saved = lost = 0.0
        after: dict[int, Estimate] = {}
        for i in users:
            base, now, weight = self.baseline[i].cost, self.current[i].cost, self.items[i].weight_ms
            try:
                after[i] = self.estimate(i, config)
            except TargetError:
                return False
            if base > 0:
                saved += weight * (base - now) / base
                lost += weight * (after[i].cost - now) / base
        if lost > self.policy.merge_margin * saved:
            return False
        self.size[merged] = size
        old = [picks.pop(first), picks.pop(second)]
        penalty = max(p.penalty_ms for p in old)
        picks[merged] = Pick(merged, size, sum(p.benefit_ms for p in old) - max(lost, 0.0), penalty)
        self.chosen = [c for c in self.chosen if c not in (first, second)] + [merged]
        self.relevant[merged] = sorted({*self.relevant.get(first, []), *self.relevant.get(second, [])})
        self.current.update(after)
        return True

    def costly_cover(self, cand: IndexSpec, ev: _Evaluation) -> tuple[str, IndexSpec] | None:
        """Why the columns past the keys its statements filter on are not worth their bytes, and the
        index without them, or None.

        Covering columns (INCLUDE, or trailing keys its statements do not filter or sort on) save heap
        fetches; sort keys (after the filtered ones) spare reading and sorting the rows past a LIMIT.
        Their bytes must save, per byte, at least ``covering_value_ratio`` (``sort_value_ratio`` for
        sort keys) of what the bytes of the same index without them save (that index costed alone on
        the same statements). Judging them against their own index, not against a full scan, keeps
        the set stable when VACUUM makes index-only scans look cheap, and keeps a key that leaves a
        few rows per value from growing to spare sorting them.
        """
        narrower = self._plain_of(cand, ev)
        if narrower is None:
            return None
        plain, ratio = narrower
        plain_size = estimated_size(plain, self.stats[cand.table], self.coster.target.dialect)
        saved = extra = 0.0
        for s in ev.served:
            try:
                alone = self.estimate(s.item, [plain]).cost
            except TargetError:
                return None
            weight, base = self.items[s.item].weight_ms, self.baseline[s.item].cost
            saved += weight * max(base - alone, 0.0) / base
            extra += weight * max(alone - s.after, 0.0) / base
        added = self.size[cand] - plain_size
        value, key_value = extra / max(added, 1), saved / max(plain_size, 1)
        if added <= 0 or value >= ratio * key_value:
            return None
        columns = ", ".join((*cand.columns[len(plain.columns) :], *cand.include))
        why = (
            f"{columns} not worth their bytes: ~{extra:.0f} ms more for +{added / 1e6:.1f} MB "
            f"({value * 1e6:.1f} ms/MB < {ratio:.0%} of the {key_value * 1e6:.1f} ms/MB of the index without them)"
        )
        return why, plain

    def _plain_of(self, cand: IndexSpec, ev: _Evaluation) -> tuple[IndexSpec, float] | None:
        """``cand`` one step narrower and the per-byte ratio that step is held to: without its covering
        columns (INCLUDE, or trailing keys its statements do not use), else without its trailing sort
        keys. A refused covering variant so leaves its sort keys to compete on their own."""
        if cand.include:
            return IndexSpec(cand.table, cand.columns, cand.descending), self.policy.covering_value_ratio
        usages = [
            u for s in ev.served for u in self.items[s.item].parsed.usages if u.table.lower() == cand.table.lower()
        ]
        keyable = {c.lower() for u in usages for c in u.keyable()}
        filtered = {c.lower() for u in usages for c in (*u.equality, *u.range, *u.join)}
        n = next((i for i, c in enumerate(cand.columns) if c.lower() not in keyable), len(cand.columns))
        ratio = self.policy.covering_value_ratio
        if n == len(cand.columns):
            n = next((i for i, c in enumerate(cand.columns) if c.lower() not in filtered), n)
            ratio = self.policy.sort_value_ratio
        if n in (0, len(cand.columns)):
            return None
        flags = tuple(cand.is_descending(i) for i in range(n))
        return IndexSpec(cand.table, cand.columns[:n], flags if any(flags) else ()), ratio

    def covering_pick(self, cand: IndexSpec) -> IndexSpec | None:
        """A pick ``cand`` is, or is a left prefix of (``cand`` would be a redundant index)."""
        info = as_index_info(cand)
        return next((c for c in self.chosen if c == cand or covers(as_index_info(c), info)), None)

    def run(self) -> list[Pick]:
        picks: dict[IndexSpec, Pick] = {}
        # heap of (-score upper bound, tiebreak, candidate, round evaluated)
        heap = []
        for c in self.relevant:
            if not self.relevant[c]:
                continue
            if (bound := self.first_bound(c)) > 0:
                heap.append((-bound, c.name, c, -1))
            else:
                penalty, gain = self._penalty(c), self._benefit_bound(c)
                why = f"write cost above gain: {penalty:.0f} ms of index maintenance on {c.table}"
                why += f" >= {gain:.0f} ms saved"
                self.refuse(c, "write-cost", why)
        heapq.heapify(heap)
        rnd, used_bytes = 0, 0
        while heap and len(picks) < self.policy.max_recommendations:
            _neg, name, cand, seen = heapq.heappop(heap)
            if (pick := self.covering_pick(cand)) is not None:
                if pick != cand:
                    self.refuse(cand, "redundant", f"redundant: a left prefix of the picked index {pick.name}")
                continue
            ev = self.evaluate(cand)
            if ev is None:
                continue
            if ev.benefit <= ev.penalty:
                self.refuse(
                    cand,
                    "write-cost",
                    f"write cost above gain: {ev.penalty:.0f} ms of index maintenance on {cand.table} "
                    f">= {ev.benefit:.0f} ms saved",
                )
                continue
            if (why := self.misfit(cand, ev, used_bytes)) is not None:
                self.refuse(cand, *why)
                continue
            if (costly := self.costly_cover(cand, ev)) is not None:
                why, plain = costly
                self.refuse(cand, "below-threshold", why)
                if plain not in self.relevant:  # the same keys without them compete
                    self.relevant[plain] = self.relevant[cand]
                    self.size[plain] = estimated_size(plain, self.stats[plain.table], self.coster.target.dialect)
                    heapq.heappush(heap, (-float("inf"), plain.name, plain, -1))
                continue
            if seen != rnd:  # stale score: re-queue with the current one
                heapq.heappush(heap, (-(ev.benefit - ev.penalty) / max(ev.added_bytes, 1), name, cand, rnd))
                continue
            used_bytes += ev.added_bytes
            benefit, penalty = ev.benefit, ev.penalty
            for old in ev.replaced:
                self.chosen.remove(old)
                earlier = picks.pop(old)
                benefit += earlier.benefit_ms
                penalty += earlier.penalty_ms
            picks[cand] = Pick(cand, self.size[cand], benefit, penalty, ev.served)
            self.chosen.append(cand)
            # the picked candidate's own estimates stand for its statements until the final re-plan
            self.current.update(ev.after)
            self.verdicts.pop(cand, None)
            rnd += 1
        self.merge(picks)
        for *_, cand, _seen in heap:
            self.verdicts.setdefault(
                cand, ("limit", f"limit of {self.policy.max_recommendations} recommendations reached")
            )
        # every statement re-planned once with all picks in place: what the advice reports
        for i in self.current:
            self.current[i] = self.estimate(i, self.chosen)
        return [picks[c] for c in self.chosen]


def select(
    items: Sequence[WorkItem],
    shortlisted: Mapping[int, Sequence[IndexSpec]],
    coster: Coster,
    stats: dict[str, TableStats],
    policy: AdvisorPolicy,
    write_ms: Mapping[str, float],
) -> Selection:
    """Greedy workload-wide choice among the shortlisted candidates (item index → its own best ones);
    ``final`` holds each statement's estimate with all picks in place; ``write_ms`` is each table's
    write time in the measured window."""
    search = _Search(items, shortlisted, coster, stats, policy, write_ms)
    picks = search.run()
    for pick in picks:
        pick.served = [
            Served(i, search.baseline[i].cost, est.cost, est.method)
            for i in search.relevant[pick.spec]
            if pick.spec.name in (est := search.current[i]).used and est.cost < search.baseline[i].cost
        ]
    return Selection(picks, search.baseline, search.current, search.verdicts)
