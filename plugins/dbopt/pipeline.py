"""The work of each weekly step, as plain functions: plan + target + earlier results in, typed
results (``dbopt.results``) out. ``dbopt.steps`` declares the order and wiring; the Airflow tasks
(``dbopt.weekly_dag``) and the CLI (``dbopt apply``) both run that declaration, so a run behaves the
same wherever it is started.

Every step that changes the database is idempotent: index names are deterministic, and "what this
run created" is judged against the index inventory taken before the first change.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dbopt.plan import ExplicitIndex, HealthGate, Plan, TargetSpec
from dbopt.results import Advice, Gate, IndexChange, IndexChanges, Judgement, Verdict, Verification, Workload
from dbopt.targets.base import IndexInfo, IndexSpec, Target, WorkloadFilter


def gate_rules(gate: HealthGate) -> list[dict[str, Any]]:
    """The plan's GO/NO-GO thresholds as rules (each rule states the bad state)."""
    service = {"scope": "service", "window_s": gate.window_s}
    rules: list[dict[str, Any]] = []
    if gate.availability_min_pct is not None:  # availability = share of requests answered without a 5xx
        rules.append({"name": "availability", "metric": "error_ratio", "op": ">",
                      "threshold": 1 - gate.availability_min_pct / 100, **service})  # fmt: skip
    if gate.error_rate_max_pct is not None:
        rules.append({"metric": "error_ratio", "op": ">", "threshold": gate.error_rate_max_pct / 100, **service})
    if gate.p95_ms_max is not None:
        rules.append({"metric": "latency_p95_ms", "op": ">", "threshold": gate.p95_ms_max, **service})
    redis = gate.cache_hit_ratio_source == "redis" and gate.cache_hit_ratio_min is not None
    if redis:  # the cache in front of the database: the whole Redis server, from INFO stats
        rules.append({"metric": "cache_hit_ratio", "op": "<", "threshold": gate.cache_hit_ratio_min,
                      "scope": "service", "source": "redis"})  # fmt: skip
    database = [
        ("cache_hit_ratio", "<", None if redis else gate.cache_hit_ratio_min),
        ("replication_lag_s", ">", None if gate.replication_lag_ms_max is None else gate.replication_lag_ms_max / 1000),
        ("long_transactions", ">", gate.long_transactions_max),
        (
            "connections_ratio",
            ">",
            None if gate.connections_used_max_pct is None else gate.connections_used_max_pct / 100,
        ),
    ]
    rules += [{"metric": m, "op": op, "threshold": t, "scope": "database"} for m, op, t in database if t is not None]
    return rules


def gate_decision(gate: HealthGate, results: dict[str, dict[str, Any]]) -> Gate:
    """GO only if every target's gate is GO; with ``on_missing: ignore`` figures nobody can measure
    (inconclusive for lack of data) do not count against GO — failing figures always do."""
    decisions = {}
    for name, r in results.items():
        failing = [f for f in r["figures"] if f["verdict"] == "fail"]
        unclear = [f for f in r["figures"] if f["verdict"] == "inconclusive"]
        ok = not failing and (not unclear or gate.on_missing == "ignore")
        decisions[name] = "GO" if ok else "NO-GO"
    go = all(d == "GO" for d in decisions.values())
    reasons = [f"{name}: {r['reason']}" for name, r in results.items() if decisions[name] == "NO-GO"]
    if go and any(r["decision"] == "NO-GO" for r in results.values()):
        reasons = ["figures that cannot be measured are ignored (on_missing: ignore)"]
    return Gate("GO" if go else "NO-GO", "; ".join(reasons) or "all figures pass", results)


def workload_filter(plan: Plan) -> WorkloadFilter:
    w = plan.workload
    return WorkloadFilter(min_mean_ms=w.min_mean_ms, min_calls=w.min_calls, top_n=w.top_n, exclude=tuple(w.exclude))


def extract_workload(plan: Plan, spec: TargetSpec, target: Target) -> Workload:
    """Slow statements from the plan's source (engine statistics or a log file), filtered to the
    target's own tables (``spec.tables``; empty: all) before the plan's top N is taken."""
    scope = {t.split(".")[-1].lower() for t in spec.tables}
    top = workload_filter(plan)
    flt = dataclasses.replace(top, top_n=sys.maxsize) if scope else top  # top N of this target's statements
    source = plan.workload.source if plan.workload.source != "auto" else target.workload_source
    if source == "slowlog":
        from dbopt.targets.slowlog import parse_slow_log

        statements = parse_slow_log(Path(plan.workload.path or ""), flt)
    elif source == "querylog" and plan.workload.path:
        from dbopt.targets.querylog import read_query_log

        statements = read_query_log(Path(plan.workload.path), flt)
    else:
        statements = target.workload(flt)
    if scope:
        statements = [s for s in statements if _mentions(s.query, scope)][: top.top_n]
    return Workload(source, tuple(statements))


def _mentions(query: str, tables: set[str]) -> bool:
    text = query.lower()
    return any(t in text for t in tables)


def explicit_specs(target: Target, indexes: Iterable[ExplicitIndex]) -> list[IndexSpec]:
    """The plan's explicit indexes, checked against the catalog (a missing table/column is an error)."""
    from dbopt.advisor import spec_from_plan

    return [
        spec_from_plan(target, ix.table, ix.columns, include=ix.include, unique=ix.unique, name=ix.name or "")
        for ix in indexes
    ]


def advise(plan: Plan, target: Target, workload: Workload) -> Advice:
    """The indexes to build this run (explicit + advised), with the inventory taken before any change."""
    from dbopt.advisor import AdvisorPolicy
    from dbopt.advisor import advise as run_advisor

    statements = list(workload.statements)
    everything = target.indexes()
    # An INVALID index is not an index anyone has (one dbopt left is rebuilt by create_index).
    before = [ix for ix in everything if ix.valid]
    preexisting = sorted(ix.name for ix in before)
    explicit = explicit_specs(target, plan.indexes.explicit)
    recommendations: list[dict[str, Any]] = []
    drop_candidates: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    write_costs: list[dict[str, Any]] = []
    if plan.indexes.auto_advice and statements:
        policy = AdvisorPolicy(
            storage_budget_bytes=int(plan.indexes.storage_budget_mb * 1024 * 1024),
            max_indexes_per_table=plan.indexes.max_per_table,
            min_table_rows=plan.indexes.min_table_rows,
        )
        advice = run_advisor(target, statements, policy).to_dict()
        recommendations = advice["recommendations"]
        drop_candidates = advice["drop_candidates"]
        skipped = advice["skipped"]
        write_costs = advice["write_costs"]
    specs = {s.name: s for s in explicit}
    for rec in recommendations:
        spec = IndexSpec.from_dict(rec["spec"])
        specs.setdefault(spec.name, spec)
    existing = {(ix.table.lower(), tuple(c.lower() for c in ix.columns)) for ix in before}
    wanted = [s for s in specs.values() if (s.table.lower(), tuple(c.lower() for c in s.columns)) not in existing]
    create, foreign, refused = _claim_names(target, wanted, {ix.name.lower(): ix for ix in everything})
    return Advice(
        preexisting=tuple(preexisting),
        create=tuple(create),
        ddl={s.name: target.index_ddl(s) for s in create},
        foreign=tuple(foreign),
        refused=tuple(refused),
        explicit=tuple(s.name for s in explicit),
        recommendations=tuple(recommendations),
        drop_candidates=tuple(drop_candidates),
        skipped=tuple(skipped),
        write_costs=tuple(write_costs),
    )


def _claim_names(
    target: Target, wanted: list[IndexSpec], by_name: dict[str, IndexInfo]
) -> tuple[list[IndexSpec], list[dict[str, Any]], list[dict[str, Any]]]:
    """The specs to build, the foreign indexes found under their names, and the specs refused.

    A name held by an index dbopt did not build is left alone: the spec moves to its second name,
    and is refused (with the reason) when that one is taken as well.
    """
    from dbopt.ownership import describe, other_name, owns

    create, foreign, refused = [], [], []
    for spec in wanted:
        ix = by_name.get(spec.name.lower())
        if ix is not None and owns(target, ix):
            if ix.valid:  # (the same columns would have counted as existing above)
                reason = (f"dbopt built {ix.name} earlier on other columns ({', '.join(ix.columns)}): drop it or "
                          "give the plan's index another name")  # fmt: skip
                refused.append({"table": spec.table, "index": spec.name, "columns": list(spec.columns),
                                "reason": reason})  # fmt: skip
            else:  # dbopt's own crashed build: create_index drops and rebuilds it
                create.append(spec)
            continue
        if ix is not None:
            foreign.append(describe(ix))
            spec = other_name(spec)
            if spec.name.lower() in by_name:
                reason = "both dbopt names of this index are taken by indexes dbopt did not build"
                refused.append({"table": spec.table, "index": spec.name, "columns": list(spec.columns),
                                "reason": reason})  # fmt: skip
                continue
        create.append(spec)
    return create, foreign, refused


def bench_queries(plan: Plan, workload: list[dict[str, Any]], dialect: str) -> list[dict[str, Any]]:
    """The queries to measure: the plan's own, else the top workload statements with real values.

    Each is screened for replay (``replay_safety``): a refused one stays in the list, marked
    ``refused: <reason>``, so the run reports it; nothing measures it. Refused workload examples do
    not count toward ``benchmark.from_workload``.
    """
    from dbopt import replay_safety  # here: sqlglot is too slow an import for every DAG parse

    b = plan.benchmark
    if b.queries:
        own = [{"name": q.name, "sql": q.sql if isinstance(q.sql, list) else [q.sql]} for q in b.queries]
        return replay_safety.screen(own, dialect, b.safe_functions)
    chosen: list[dict[str, Any]] = []
    for s in workload:
        if s.get("example") and s["query"].lstrip().lower().startswith(("select", "with")):
            q = {"name": s["digest"], "sql": [s["example"]], "query": s["query"]}
            chosen += replay_safety.screen([q], dialect, b.safe_functions)
        if len(replay_safety.measurable(chosen)) >= b.from_workload:
            break
    return chosen


NO_QUERIES = (
    "no replayable query: the workload has no statement with concrete values (PostgreSQL: install pg_qualstats; "
    "MySQL: enable the events_statements_history_long consumer; SQLite: log queries) and the plan lists no "
    "benchmark.queries, or every candidate was refused as unsafe to replay (see 'refused') — an index that "
    "cannot be measured is not built"
)


def with_queries(advice: Advice, queries: list[dict[str, Any]]) -> Advice:
    """The advice with the queries that will measure it (refused ones included, for the report);
    without a measurable one, nothing could be verified: build nothing, and say why."""
    from dbopt import replay_safety

    measured = dataclasses.replace(advice, queries=tuple(queries))
    if replay_safety.measurable(queries) or not advice.create:
        return measured
    return dataclasses.replace(measured, create=(), not_built=advice.create, not_built_reason=NO_QUERIES)


def benchmark(
    plan: Plan,
    target: Target,
    queries: list[dict[str, Any]],
    built: list[dict[str, Any]] | None = None,
    owner: Target | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Real latencies of the queries: the plan's iterations spread over shuffled rounds.

    Every query is screened again here, against this target's dialect (``dbopt bench`` and any caller
    that did not go through ``bench_queries``); refused ones are listed under ``refused``, not run.

    ``built`` (the build results; given after the build): where the engine can hide the indexes this
    run created without rebuilding them (``Target.index_hiding``), both arms are measured now,
    interleaved — the "before" arm under "before_arm" — and a dry run measures the same configuration
    in both. Elsewhere this is the after phase, judged against bench_before's. ``owner`` (default
    ``target``) hides the indexes: a read-only benchmark user cannot ALTER. ``progress(done, total)``
    after every run: task-log lines, a terminal progress bar.
    """
    from dbopt import replay_safety
    from dbopt.bench import BenchQuery, measure
    from dbopt.bench.hidden import CannotHide, measure_hidden

    b = plan.benchmark
    screened = replay_safety.screen(queries, target.dialect, b.safe_functions)
    refused = replay_safety.refused(screened)
    runnable = replay_safety.measurable(screened)
    if not runnable:
        return {"queries": [], "method": "nothing measured: no benchmark query", "refused": refused}
    bq = [BenchQuery(name=q["name"], sql=tuple(q["sql"])) for q in runnable]
    interleave: dict[str, str] = {}
    if built is not None:
        created = [(c["table"], c["index"]) for c in built if c.get("status") == "created"]
        p = plan.indexes
        hiding = (owner or target).index_hiding(created, lock_timeout_s=p.lock_timeout_s, retries=p.retries)
        if hiding is not None:
            try:
                before, after = measure_hidden(target, bq, hiding, b.iterations, b.warmup)
                return after.to_dict() | {"design": "ab_interleaved", "hiding": hiding.mechanism,
                                          "before_arm": before.to_dict(), "refused": refused}  # fmt: skip
            except CannotHide as err:
                interleave = {"interleave_refused": str(err)}
    rounds = min(5, b.iterations)
    iterations = -(-b.iterations // rounds)
    result = measure(target, bq, iterations=iterations, warmup=b.warmup, rounds=rounds, progress=progress).to_dict()
    return result | {"design": "before_after", "refused": refused} | interleave


def check_access(target: Target, tables: Iterable[str] = ()) -> None:
    """Fail early, naming each missing grant and the statement that gives it."""
    from dbopt.privileges import require_privileges

    require_privileges(target, list(tables) or None)


def create_index(plan: Plan, target: Target, ix: IndexSpec, dry_run: bool) -> IndexChange:
    """Build one index online after every guardrail passed (a refusal is a result, not a crash)."""
    from dbopt.guardrails import GuardrailError, guard_index_build, only_index_ddl
    from dbopt.ownership import describe, forget_build, index_named, owns, record_build

    statement = target.index_ddl(ix)
    if dry_run:
        only_index_ddl(statement, target.dialect)
        return IndexChange("create", ix.table, ix.name, "dry_run", statement)
    base = {"action": "create", "table": ix.table, "index": ix.name, "statement": statement}
    present = index_named(target, ix.table, ix.name, ix.schema)
    if present is not None and not owns(target, present):
        return IndexChange.from_dict(base | {"status": "refused", "error": describe(present)["reason"]})
    try:
        guard = guard_index_build(plan, target, ix)
    except GuardrailError as err:
        return IndexChange.from_dict(base | {"status": "refused", "error": str(err)})
    p = plan.indexes
    cleaned = False
    if present is not None and not present.valid:  # dbopt's own crashed build (owns() said so)
        dropped = target.drop_index(present.table, ix.name, lock_timeout_s=p.lock_timeout_s, retries=p.retries)
        if dropped.status != "dropped":
            error = f"cannot drop the INVALID leftover of an earlier build: {dropped.error}"
            return IndexChange.from_dict(base | {"status": "failed", "left_behind": f"INVALID index {ix.name!r}",
                                                 "guardrails": guard, "error": error})  # fmt: skip
        cleaned = True
    record_build(target, ix.name)
    result = target.create_index(
        ix, lock_timeout_s=p.lock_timeout_s, statement_timeout_s=p.statement_timeout_s, retries=p.retries
    )
    if not result.left_behind:  # the record is needed only to clean up after a crash or a leftover
        forget_build(target, ix.name)
    cleaned = result.invalid_cleaned or cleaned
    return IndexChange.from_dict(result.to_dict() | {"guardrails": guard, "invalid_cleaned": cleaned})


def verify_plans(target: Target, created: Iterable[IndexChange], queries: Iterable[dict[str, Any]]) -> Verification:
    """Which benchmark queries the planner now answers with each new index (EXPLAIN after the build)."""
    from dbopt import replay_safety

    used_by: dict[str, list[str]] = {c.index: [] for c in created}
    plans: dict[str, list[str]] = {}
    for q in replay_safety.measurable(queries):
        explain = target.explain(q["sql"][0])
        plans[q["name"]] = sorted(explain.indexes_used())
        for name in explain.indexes_used() & used_by.keys():
            used_by[name].append(q["name"])
    sizes = {ix.name: ix.size_bytes for ix in target.indexes() if ix.name in used_by}
    return Verification(used_by, plans, sizes)


def keep_or_revert(
    plan: Plan,
    created: list[dict[str, Any]],
    verification: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """Per index: keep it when a query it serves got measurably faster and none of them got slower."""
    from dbopt.bench import BenchResult, check_plan_targets, compare

    b = plan.benchmark
    if not created:
        return {"indexes": [], "revert": [], "decision": "keep", "comparison": None, "plan_targets": None}
    measured_after = BenchResult.from_dict(after)
    design = after.get("design", "before_after")
    arm_a = BenchResult.from_dict(after["before_arm"] if design == "ab_interleaved" else before)
    # nothing built (dry run, failed builds): both arms measured the same database — an A/A check
    aa = not any(c["status"] == "created" for c in created)
    served = sorted({q for queries in verification["used_by"].values() for q in queries})
    comparison = compare(arm_a, measured_after, b.min_effect, b.alpha, served, aa=aa, design=design)
    verdicts = {q.name: q.verdict for q in comparison.queries}
    decisions = []
    for ddl in created:
        if ddl["status"] not in ("created", "exists", "dry_run"):
            continue
        served = verification["used_by"].get(ddl["index"], [])
        got = {q: verdicts.get(q, "inconclusive") for q in served}
        if aa:
            keep, why = False, f"{'dry run: ' if ddl['status'] == 'dry_run' else ''}{NOTHING_BUILT}"
        elif not served:
            keep, why = False, "no benchmark query uses it (EXPLAIN after build)"
        elif "regressed" in got.values():
            keep, why = False, f"a query it serves regressed: {got}"
        elif "improved" in got.values():
            keep, why = True, f"improved: {[q for q, v in got.items() if v == 'improved']}"
        else:
            keep, why = False, f"no measurable gain on the queries it serves: {got}"
        decisions.append({"table": ddl["table"], "index": ddl["index"], "keep": keep, "reason": why, "verdicts": got})
    revert = [d["index"] for d in decisions if not d["keep"]]
    evidence = comparison.to_dict()
    del evidence["before"], evidence["after"]  # already in the bench_before/bench_after results
    return {
        "indexes": decisions,
        "revert": revert,
        "decision": "revert" if revert else "keep",
        "comparison": evidence,
        "plan_targets": check_plan_targets(measured_after, b.targets).to_dict() if b.targets else None,
    }


NOTHING_BUILT = (
    "nothing was built, so before and after measured the same database (an A/A check of the measurement, "
    "never a reason to keep)"
)


def _drop(plan: Plan, target: Target, table: str, index: str, reason: str, dry_run: bool) -> IndexChange:
    if dry_run:
        return IndexChange("drop", table, index, "dry_run", reason=reason)
    r = target.drop_index(table, index, lock_timeout_s=plan.indexes.lock_timeout_s, retries=plan.indexes.retries)
    return IndexChange.from_dict(r.to_dict() | {"reason": reason})


def revert_indexes(
    plan: Plan, target: Target, advice: Advice, judgement: Judgement, dry_run: bool, *, kept_too: bool = False
) -> IndexChanges:
    """Drop exactly the indexes this run created and judged useless (never a pre-existing one, never
    one without dbopt's mark); ``kept_too``: after a canary rollback, the ones it kept as well."""
    drops = [
        _revert_one(plan, target, d, dry_run)
        for d in judgement.indexes
        if (kept_too or not d.keep) and d.index not in advice.preexisting
    ]
    return IndexChanges(tuple(drops), "" if drops else "every index this run built was kept")


def _revert_one(plan: Plan, target: Target, d: Verdict, dry_run: bool) -> IndexChange:
    from dbopt.ownership import index_named

    if not dry_run:
        present = index_named(target, d.table, d.index)
        if present is not None and not present.owned:
            return IndexChange("drop", d.table, d.index, "refused",
                               error="it does not carry dbopt's mark: dbopt did not build it, left alone")  # fmt: skip
    return _drop(plan, target, d.table, d.index, d.reason if not d.keep else "the canary rolled back", dry_run)


def drop_unused(plan: Plan, target: Target, advice: Advice, dry_run: bool) -> IndexChanges:
    """Drop the existing indexes the advisor reports unused or redundant — only if the plan allows it.

    The backup step already saved these tables' DDL (index definitions included), so each drop can be
    undone from it. Unique and primary-key indexes are never candidates.
    """
    if not plan.indexes.allow_drops:
        return IndexChanges(reason="the plan does not allow drops (indexes.allow_drops)")
    drops = [_drop(plan, target, d["table"], d["index"], d["reason"], dry_run) for d in advice.drop_candidates]
    return IndexChanges(tuple(drops), "" if drops else "the advisor found no unused or redundant index")


def backup_tables(plan: Plan, advice: Advice, scope: Iterable[str]) -> list[str]:
    """The tables a run may change: those it builds on, and those it may drop indexes from."""
    tables = {s.table for s in advice.create}
    if plan.indexes.allow_drops:
        tables |= {d["table"] for d in advice.drop_candidates}
    return sorted(tables) or list(scope)


def run_problems(changes: Iterable[IndexChange], advice: Advice | None = None) -> list[str]:
    """Why a run did not do what was asked: builds or drops that failed or were refused, anything
    left behind, planned indexes refused for their names. Empty when it did."""
    changes = list(changes)
    problems = [f"{c.action} {c.index}: {c.status}: {c.error or ''}".strip()
                for c in changes if c.status in ("failed", "refused")]  # fmt: skip
    problems += [f"left behind: {c.extra['left_behind']}" for c in changes if c.extra.get("left_behind")]
    problems += [f"not built {r['index']}: {r['reason']}" for r in (advice.refused if advice else ())]
    return problems
