"""Candidate selection: each statement's own best indexes, costed alone, enter the search.

The workload-wide search (``select``) costs every candidate on every statement it could serve, and
re-costs after each pick: with hundreds of statements that is thousands of what-if plans. As in
AutoAdmin's candidate selection (Chaudhuri & Narasayya, VLDB 1997), a candidate only earns a place
in that search by being one of the best indexes for a statement it was generated from, costed alone
against the statement's baseline and cutting that cost by at least ``min_improvement``. "Best" is
both the ``keep`` cheapest and the one with the most cost cut per byte: the search needs the compact
choice too (``(a)`` when ``(a, b DESC)`` saves no more), or it could only ever pick the widest.

The search then costs a candidate only on statements whose own best candidates start with the same
column (a narrower or wider variant of what that statement wants): an index that leads elsewhere is
beaten there by the statement's own. The plans costed here are memoized, so the search reuses them.
Where the cost model gives a lower bound without a plan (``Coster.optimistic``), the cheapest are
planned best bound first and only until no later one can rank higher.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from dbopt.advisor.cost import Coster
from dbopt.advisor.select import WorkItem
from dbopt.targets.base import IndexSpec, TargetError


def shortlist(
    items: Sequence[WorkItem],
    generated: Mapping[int, Sequence[IndexSpec]],
    coster: Coster,
    keep: int,
    min_improvement: float,
    size: Callable[[IndexSpec], int],
) -> dict[int, list[IndexSpec]]:
    """Item index → its best own candidates; ``generated`` maps item index → its own candidates.

    Items no candidate helps enough are left out.
    """
    out: dict[int, list[IndexSpec]] = {}
    for i, specs in generated.items():
        try:
            base = coster.cost(items[i].text, items[i].parsed, []).cost
        except TargetError:
            continue  # the statement cannot be planned at all (reported by the caller)
        best = _Ranking(items[i], coster, base, min_improvement, size)
        chosen = []
        # per table: a join needs an index on each side, costed alone each cuts only its own share
        for table in dict.fromkeys(s.table for s in specs):
            mine = [s for s in specs if s.table == table]
            chosen += best.cheapest(mine, keep) + best.most_per_byte(mine)
        if chosen:
            out[i] = list(dict.fromkeys(chosen))
    return out


class _Ranking:
    """One statement's candidates, costed alone on demand (each at most once)."""

    def __init__(
        self, it: WorkItem, coster: Coster, base: float, min_improvement: float, size: Callable[[IndexSpec], int]
    ) -> None:
        self.it, self.coster, self.base, self.size = it, coster, base, size
        self.min_improvement = min_improvement
        self.threshold = base * (1 - min_improvement)  # a candidate must cut at least this much
        self._costs: dict[IndexSpec, float | None] = {}

    def cost(self, spec: IndexSpec) -> float | None:
        """Its cost when the plan uses it and it cuts the cost enough, else None."""
        if spec not in self._costs:
            try:
                est = self.coster.cost(self.it.text, self.it.parsed, [spec])
                good = spec.name in est.used and est.cost <= self.threshold
                self._costs[spec] = est.cost if good else None
            except TargetError:  # the engine refuses this index: it cannot be judged
                self._costs[spec] = None
        return self._costs[spec]

    def bound(self, spec: IndexSpec) -> float | None:
        return self.coster.optimistic(self.it.parsed, [spec])

    def cheapest(self, specs: Sequence[IndexSpec], keep: int) -> list[IndexSpec]:
        """The ``keep`` cheapest; a wider index must be ``min_improvement`` cheaper than a smaller one
        to rank above it (the rule a pick must meet to widen another, ``select``)."""

        def width(s: IndexSpec) -> tuple[int, str]:
            return len(s.columns) + len(s.include), s.name

        bounds = [(self.bound(s), s) for s in specs]
        if any(b is None for b, _ in bounds):
            costed = [(c, width(s), s) for s in specs if (c := self.cost(s)) is not None]
        else:
            costed = []
            for b, s in sorted(bounds, key=lambda bs: (bs[0], width(bs[1]))):
                if len(costed) == keep or b > self.threshold:  # type: ignore[operator]
                    break  # every later candidate costs at least its bound: none can rank higher
                if (c := self.cost(s)) is not None:
                    costed.append((c, width(s), s))
        ranked = [s for *_, s in sorted(costed)]
        cost = {s: c for c, _, s in costed}
        out: list[IndexSpec] = []
        for s in ranked:
            near = [t for t in ranked if cost[t] * (1 - self.min_improvement) < cost[s] <= cost[t] or t == s]
            smallest = min(near, key=self.size)
            if smallest not in out:
                out.append(smallest)
            if len(out) == keep:
                break
        return out

    def most_per_byte(self, specs: Sequence[IndexSpec]) -> list[IndexSpec]:
        """The candidate with the most cost cut per byte. Where costs have a lower bound it is chosen
        by that bound, unplanned: the search plans it only if it comes to the top of its queue."""

        def value(cost: float, s: IndexSpec) -> float:
            return (self.base - cost) / max(self.size(s), 1)

        bounds = [(self.bound(s), s) for s in specs]
        if any(b is None for b, _ in bounds):
            costed = [(value(c, s), s.name, s) for s in specs if (c := self.cost(s)) is not None]
        else:
            costed = [(value(b, s), s.name, s) for b, s in bounds if b is not None and b <= self.threshold]
        return [max(costed)[2]] if costed else []
