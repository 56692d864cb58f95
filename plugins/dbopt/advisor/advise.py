"""advise(): workload in, index advice out — parse, gather statistics, generate, cost, select."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlglot import exp

from dbopt.advisor.candidates import Rejection, as_index_info, generate
from dbopt.advisor.catalog import read_catalog
from dbopt.advisor.cost import Coster
from dbopt.advisor.drops import drop_candidates
from dbopt.advisor.model import Advice, QueryEstimate, Recommendation, SkippedStatement, short
from dbopt.advisor.parse import (
    ParseFailure,
    analyse,
    bind_limit,
    has_parameters,
    inline,
    needs_inlining,
    parse_sql,
    table_names,
    unprepared,
)
from dbopt.advisor.policy import AdvisorPolicy
from dbopt.advisor.reasons import no_index_reasons
from dbopt.advisor.select import Pick, Selection, WorkItem, estimated_size, select, serves
from dbopt.advisor.shortlist import shortlist
from dbopt.advisor.writes import is_write, write_costs
from dbopt.targets.base import Dialect, IndexInfo, IndexSpec, Statement, TableStats, Target, TargetError
from dbopt.targets.common import covers
from dbopt.targets.dialects import traits


class _Timer(dict[str, float]):
    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[phase] = self.get(phase, 0.0) + (time.perf_counter() - start) * 1000.0


def advise(target: Target, statements: Sequence[Statement], policy: AdvisorPolicy | None = None) -> Advice:
    """Recommend indexes for the workload ``statements`` on ``target`` (nothing is changed)."""
    policy = policy or AdvisorPolicy()
    timer = _Timer()
    skipped: list[SkippedStatement] = []

    def skip(st: Statement, reason: str, code: str) -> None:
        skipped.append(SkippedStatement(st.digest, short(st.query), reason, code))

    with timer("total_ms"):
        with timer("parse_ms"):
            trees = []
            for st in statements:
                try:
                    trees.append((st, *_parse(st, target.dialect)))
                except ParseFailure as err:
                    skip(st, str(err), "not-analysable")
        with timer("catalog_ms"):
            catalog = read_catalog(target, {t for _, _, tree in trees for t in table_names(tree, target.dialect)})
            stats, existing, columns = catalog.stats, catalog.existing, catalog.columns
        items = []
        with timer("parse_ms"):
            for st, text, tree in trees:
                names = table_names(tree, target.dialect)
                if absent := sorted(names & catalog.missing):
                    skip(st, f"table not found: {', '.join(absent)}", "no-table")
                    continue
                try:
                    merged = traits(target.dialect).inlines_views and needs_inlining(tree, catalog.views)
                    viewed = inline(tree, catalog.views, columns) if merged else tree
                except ParseFailure as err:
                    skip(st, str(err), "not-analysable")
                    continue
                parsed = analyse(viewed, columns, catalog.aliases)
                if parsed.kind == "other":
                    skip(st, "not a query or INSERT/UPDATE/DELETE", "not-a-query")
                else:
                    items.append(WorkItem(st, text, parsed, generic=has_parameters(tree)))
        with timer("candidates_ms"):
            generated, refused = _candidates(items, stats, existing, policy, target.dialect)
        coster = Coster(target, stats, existing)
        with timer("cost_ms"):
            kept = _plannable(items, [c for specs in generated.values() for c in specs], coster, skip)
            generated = {new: generated[old] for new, old in enumerate(kept) if old in generated}
            refused = {new: refused[old] for new, old in enumerate(kept) if old in refused}
            items = [items[i] for i in kept]
            kept = shortlist(
                items,
                generated,
                coster,
                policy.candidates_per_statement,
                policy.min_improvement,
                lambda spec: estimated_size(spec, stats[spec.table], target.dialect),
            )
        writes = write_costs(items, stats)
        with timer("select_ms"):
            selection = select(items, kept, coster, stats, policy, {t: w.ms for t, w in writes.items()})
            skipped += no_index_reasons(items, refused, generated, kept, selection, coster, policy, writes)
        total_weight = sum(it.weight_ms for it in items) or 1.0
        recommendations = sorted(
            (_recommendation(p, items, selection, target, existing, total_weight) for p in selection.picks),
            key=lambda r: -r.benefit_ms,
        )
        in_use = {name for est in selection.baseline.values() for name in est.used}
        drops = drop_candidates(existing, [r.spec for r in recommendations], in_use, policy.suggest_drops)
    timer["whatif_calls"] = float(coster.whatif_calls)
    return Advice(
        dialect=target.dialect,
        recommendations=tuple(recommendations),
        drop_candidates=tuple(drops),
        skipped=tuple(skipped),
        rejected=tuple(dict.fromkeys(r for rs in refused.values() for r in rs)),
        write_costs=tuple(writes[t] for t in sorted(writes)),
        statements=len(statements),
        analysed=len(items),
        timing={k: round(v, 2) for k, v in timer.items()},
    )


def _parse(st: Statement, dialect: Dialect) -> tuple[str, exp.Expression]:
    """Prefer the concrete example (real LIKE patterns and values); fall back to the normalized text."""
    if st.example:
        try:
            return st.example, parse_sql(st.example, dialect)
        except ParseFailure:
            pass  # examples can be truncated by the engine
    text = st.query
    if traits(dialect).numbered_params:  # $n placeholders: planned as a generic plan
        per_call = st.rows / st.calls if st.rows is not None and st.calls else None
        text = bind_limit(unprepared(text), per_call)
    return text, parse_sql(text, dialect)


def _candidates(
    items: Sequence[WorkItem],
    stats: dict[str, TableStats],
    existing: Sequence[IndexInfo],
    policy: AdvisorPolicy,
    dialect: Dialect,
) -> tuple[dict[int, list[IndexSpec]], dict[int, list[Rejection]]]:
    """Each item's own candidates and its refused ones (by item index; items with none left out).

    Write statements get none: they weigh against indexes on their table (``dbopt.advisor.writes``).
    """
    generated: dict[int, list[IndexSpec]] = {}
    rejected: dict[int, list[Rejection]] = {}
    for i, it in enumerate(items):
        if is_write(it):
            continue
        specs: dict[IndexSpec, None] = {}
        refused: dict[Rejection, None] = {}
        for usage in it.parsed.usages:
            if usage.table not in stats:
                continue
            on_table = [ix for ix in existing if ix.table.lower() == usage.table.lower()]
            found, no = generate(usage, stats[usage.table], on_table, policy, dialect)
            specs.update(dict.fromkeys(found))
            refused.update(dict.fromkeys(no))
        if specs:
            generated[i] = list(specs)
        if refused:
            rejected[i] = list(refused)
    return generated, rejected


def _plannable(
    items: list[WorkItem], candidates: Sequence[IndexSpec], coster: Coster, skip: Callable[[Statement, str, str], None]
) -> list[int]:
    """Indexes of the items whose baseline the engine can plan (only those a candidate could serve need a plan)."""
    out = []
    for i, it in enumerate(items):
        if any(serves(c, it.parsed) for c in candidates):
            try:
                coster.cost(it.text, it.parsed, [])
            except TargetError as err:
                skip(it.statement, f"cannot plan: {err}", "not-plannable")
                continue
        out.append(i)
    return out


def _recommendation(
    pick: Pick,
    items: Sequence[WorkItem],
    selection: Selection,
    target: Target,
    existing: Sequence[IndexInfo],
    total_weight: float,
) -> Recommendation:
    spec = pick.spec
    queries = tuple(
        QueryEstimate(
            digest=items[s.item].statement.digest,
            query=short(items[s.item].statement.query),
            weight_ms=round(items[s.item].weight_ms, 3),
            cost_before=round(s.before, 3),
            cost_after=round(s.after, 3),
            method=s.method,
            generic=items[s.item].generic,
        )
        for s in pick.served
    )
    before = sum(q.cost_before for q in queries)
    after = sum(q.cost_after for q in queries)
    method = ",".join(sorted({q.method for q in queries})) or "none"
    how = method + (", generic plan: parameters without values" if any(q.generic for q in queries) else "")
    share = sum(q.weight_ms for q in queries) / total_weight
    roles = _roles(spec, items[pick.served[0].item] if pick.served else None)
    cut = (1 - after / before) if before else 0.0
    reason = (
        f"{roles}; serves {len(queries)} statement(s), {share:.0%} of workload time; "
        f"estimated cost {before:.1f} → {after:.1f} ({cut:.0%} less, {how}); "
        f"~{pick.size_bytes / 1e6:.1f} MB"
    )
    if pick.penalty_ms:
        reason += f"; write penalty {pick.penalty_ms:.0f} ms of {pick.benefit_ms:.0f} ms saved"
    info = as_index_info(spec)
    return Recommendation(
        spec=spec,
        ddl=target.index_ddl(spec),
        table=spec.table,
        columns=spec.columns,
        include=spec.include,
        queries=queries,
        cost_before=round(before, 3),
        cost_after=round(after, 3),
        benefit_ms=round(pick.benefit_ms, 3),
        write_penalty_ms=round(pick.penalty_ms, 3),
        estimated_size_bytes=pick.size_bytes,
        method=method,
        reason=reason,
        makes_redundant=tuple(ix.name for ix in existing if not (ix.unique or ix.primary) and covers(info, ix)),
    )


def _roles(spec: IndexSpec, item: WorkItem | None) -> str:
    """'equality on a, b; range on c; sort on d' for the first statement the index serves."""
    usage = next((u for u in item.parsed.usages if u.table == spec.table), None) if item else None
    if usage is None:
        return f"index on {spec.table}({', '.join(spec.columns)})"
    sort_cols = {c for c, _ in usage.order_by} | set(usage.group_by)
    parts: dict[str, list[str]] = {}
    for col in spec.columns:
        role = (
            "equality" if col in usage.equality
            else "join" if col in usage.join
            else "range" if col in usage.range
            else "sort" if col in sort_cols
            else "covering"
        )  # fmt: skip
        parts.setdefault(role, []).append(col)
    if spec.include:
        parts.setdefault("covering", []).extend(spec.include)
    return "; ".join(f"{role} on {', '.join(cols)}" for role, cols in parts.items())
