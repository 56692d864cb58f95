"""Why a statement gets no index: one reason per analysed statement no recommendation serves.

The reason is the furthest step the statement reached: it writes (and weighs against indexes); it
has no candidate (and what refused them); no candidate cut its estimated cost enough (with the best
numbers); or the workload-wide search dropped its candidates (the search's verdict: write cost
above gain with both numbers, budget, per-table limit, …).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dbopt.advisor.candidates import Rejection
from dbopt.advisor.cost import Coster
from dbopt.advisor.model import SkippedStatement, short
from dbopt.advisor.policy import AdvisorPolicy
from dbopt.advisor.select import Selection, WorkItem
from dbopt.advisor.writes import WriteCost, is_write
from dbopt.targets.base import IndexSpec, TargetError

MAX_COSTED = 3  # candidates re-costed to say how close a below-threshold statement came


def no_index_reasons(
    items: Sequence[WorkItem],
    rejections: Mapping[int, Sequence[Rejection]],
    generated: Mapping[int, Sequence[IndexSpec]],
    shortlisted: Mapping[int, Sequence[IndexSpec]],
    selection: Selection,
    coster: Coster,
    policy: AdvisorPolicy,
    writes: Mapping[str, WriteCost],
) -> list[SkippedStatement]:
    served = {s.item for p in selection.picks for s in p.served}
    out = []
    for i, it in enumerate(items):
        if i in served:
            continue
        if is_write(it):
            table = it.parsed.written_table or "?"
            total = writes[table].ms if table in writes else it.weight_ms
            code, why = (
                "write",
                (
                    f"write statement: {it.weight_ms:.0f} ms of the {total:.0f} ms of writes on {table} in the "
                    f"window, weighed against new indexes on {table} (writes never produce candidates)"
                ),
            )
        elif i not in generated:
            code, why = _no_candidate(rejections.get(i, ()))
        elif i not in shortlisted:
            code, why = "below-threshold", _below_threshold(it, generated[i], coster, policy)
        else:
            code, why = _dropped(shortlisted[i], selection)
        out.append(SkippedStatement(it.statement.digest, short(it.statement.query), why, code))
    return out


def _no_candidate(refused: Sequence[Rejection]) -> tuple[str, str]:
    if not refused:
        return "no-candidate", "no candidate: no column a btree index could use (nothing filtered, joined or sorted on)"
    parts = dict.fromkeys(f"{r.table}({', '.join(r.columns)}): {r.reason}" for r in refused)
    return "refused", "every candidate refused: " + "; ".join(parts)


def _below_threshold(it: WorkItem, specs: Sequence[IndexSpec], coster: Coster, policy: AdvisorPolicy) -> str:
    """The best candidate's estimated cut, costed alone (memoized plans: no new what-if call on PostgreSQL)."""
    limit = f"no candidate cuts its estimated cost by {policy.min_improvement:.0%}"
    try:
        base = coster.cost(it.text, it.parsed, []).cost
    except TargetError as err:
        return f"{limit} (cannot plan: {err})"
    best: tuple[float, IndexSpec] | None = None
    unused = 0
    for spec in sorted(specs, key=lambda s: coster.optimistic(it.parsed, [s]) or 0.0)[:MAX_COSTED]:
        try:
            est = coster.cost(it.text, it.parsed, [spec])
        except TargetError:
            continue
        if spec.name not in est.used:
            unused += 1
        elif best is None or est.cost < best[0]:
            best = (est.cost, spec)
    if best is None:
        return f"{limit}: the planner uses none of its {len(specs)} candidate(s) (estimated cost {base:.1f})"
    cost, spec = best
    return f"{limit}: best {spec.table}({', '.join(spec.columns)}) {base:.1f} → {cost:.1f}"


def _dropped(specs: Sequence[IndexSpec], selection: Selection) -> tuple[str, str]:
    verdicts = [selection.verdicts[s] for s in specs if s in selection.verdicts]
    if not verdicts:
        return "not-used", "the picked indexes do not lower its estimated cost"
    code = verdicts[0][0]
    parts = dict.fromkeys(f"{s.table}({', '.join(s.columns)}): {selection.verdicts[s][1]}" for s in specs
                          if s in selection.verdicts)  # fmt: skip
    return code, "; ".join(parts)
