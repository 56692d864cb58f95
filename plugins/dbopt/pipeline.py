"""The steps of a weekly optimization run, as plain functions: plan + target + earlier results in,
JSON-able dicts out. The Airflow tasks (``dbopt.weekly_dag``) and the CLI (``dbopt apply``) call
these same functions, so a run behaves the same wherever it is started.

Every step that changes the database is idempotent: index names are deterministic, and "what this
run created" is judged against the index inventory taken before the first change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dbopt.plan import ExplicitIndex, HealthGate, Plan
from dbopt.targets.base import IndexSpec, Statement, Target, WorkloadFilter

_DEFAULT_SOURCE = {"postgres": "pg_stat_statements", "mysql": "performance_schema", "sqlite": "querylog"}


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
    database = [
        ("cache_hit_ratio", "<", gate.cache_hit_ratio_min),
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


def gate_decision(gate: HealthGate, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
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
    return {"decision": "GO" if go else "NO-GO", "reason": "; ".join(reasons) or "all figures pass",
            "targets": results}  # fmt: skip


def workload_filter(plan: Plan) -> WorkloadFilter:
    w = plan.workload
    return WorkloadFilter(min_mean_ms=w.min_mean_ms, min_calls=w.min_calls, top_n=w.top_n, exclude=tuple(w.exclude))


def extract_workload(plan: Plan, target: Target) -> list[dict[str, Any]]:
    """Slow statements from the plan's source (engine statistics or a log file), filtered."""
    flt = workload_filter(plan)
    source = plan.workload.source if plan.workload.source != "auto" else _DEFAULT_SOURCE[target.dialect]
    if source == "slowlog":
        from dbopt.targets.slowlog import parse_slow_log

        statements = parse_slow_log(Path(plan.workload.path or ""), flt)
    elif source == "querylog" and plan.workload.path:
        from dbopt.targets.querylog import read_query_log

        statements = read_query_log(Path(plan.workload.path), flt)
    else:
        statements = target.workload(flt)
    scope = {t.split(".")[-1].lower() for t in plan.targets[0].tables}
    if scope:
        statements = [s for s in statements if _mentions(s.query, scope)]
    return [s.to_dict() for s in statements]


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


def advise(plan: Plan, target: Target, workload: list[dict[str, Any]]) -> dict[str, Any]:
    """The indexes to build this run (explicit + advised), with the inventory taken before any change."""
    from dbopt.advisor import AdvisorPolicy
    from dbopt.advisor import advise as run_advisor

    statements = [Statement.from_dict(s) for s in workload]
    # An INVALID leftover of a crashed build is not an index anyone has: create_index cleans it up
    # and builds again, and this run then owns the result.
    before = [ix for ix in target.indexes() if ix.valid]
    preexisting = sorted(ix.name for ix in before)
    explicit = explicit_specs(target, plan.indexes.explicit)
    recommendations: list[dict[str, Any]] = []
    drop_candidates: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
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
    specs = {s.name: s for s in explicit}
    for rec in recommendations:
        spec = IndexSpec.from_dict(rec["spec"])
        specs.setdefault(spec.name, spec)
    existing = {(ix.table.lower(), tuple(c.lower() for c in ix.columns)) for ix in before}
    create = [
        s.to_dict()
        for s in specs.values()
        if s.name not in preexisting and (s.table.lower(), tuple(c.lower() for c in s.columns)) not in existing
    ]
    return {
        "preexisting": preexisting,
        "create": create,
        "ddl": {s["name"]: target.index_ddl(IndexSpec.from_dict(s)) for s in create},
        "explicit": [s.name for s in explicit],
        "recommendations": recommendations,
        "drop_candidates": drop_candidates,
        "skipped": skipped,
    }


def bench_queries(plan: Plan, workload: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The queries to measure: the plan's own, else the top workload statements with real values."""
    if plan.benchmark.queries:
        return [{"name": q.name, "sql": q.sql if isinstance(q.sql, list) else [q.sql]} for q in plan.benchmark.queries]
    chosen = []
    for s in workload:
        if s.get("example") and s["query"].lstrip().lower().startswith(("select", "with")):
            chosen.append({"name": s["digest"], "sql": [s["example"]], "query": s["query"]})
        if len(chosen) >= plan.benchmark.from_workload:
            break
    return chosen


NO_QUERIES = (
    "no replayable query: the workload has no statement with concrete values (PostgreSQL: install pg_qualstats; "
    "MySQL: enable the events_statements_history_long consumer; SQLite: log queries) and the plan lists no "
    "benchmark.queries — an index that cannot be measured is not built"
)


def hold_unmeasurable(advice: dict[str, Any], queries: list[dict[str, Any]]) -> dict[str, Any]:
    """Without benchmark queries nothing could be verified: build nothing, and say why."""
    if queries or not advice["create"]:
        return advice
    return advice | {"create": [], "not_built": advice["create"], "not_built_reason": NO_QUERIES}


def benchmark(
    plan: Plan, target: Target, queries: list[dict[str, Any]], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Real latencies of the queries: the plan's iterations spread over up to 5 shuffled rounds
    (``progress(done, total)`` after every run: task-log lines, a terminal progress bar)."""
    from dbopt.bench import BenchQuery, measure

    if not queries:
        return {"queries": [], "method": "nothing measured: no benchmark query"}
    b = plan.benchmark
    rounds = min(5, b.iterations)
    bq = [BenchQuery(name=q["name"], sql=tuple(q["sql"])) for q in queries]
    iterations = -(-b.iterations // rounds)
    return measure(target, bq, iterations=iterations, warmup=b.warmup, rounds=rounds, progress=progress).to_dict()


def check_access(target: Target, tables: Iterable[str] = ()) -> None:
    """Fail early, naming each missing grant and the statement that gives it."""
    from dbopt.privileges import require_privileges

    require_privileges(target, list(tables) or None)


def create_index(plan: Plan, target: Target, spec: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    """Build one index online after every guardrail passed (a refusal is a result, not a crash)."""
    from dbopt.guardrails import GuardrailError, guard_index_build, only_index_ddl

    ix = IndexSpec.from_dict(spec)
    statement = target.index_ddl(ix)
    if dry_run:
        only_index_ddl(statement, target.dialect)
        return {"action": "create", "table": ix.table, "index": ix.name, "status": "dry_run", "statement": statement}
    try:
        guard = guard_index_build(plan, target, ix)
    except GuardrailError as err:
        return {"action": "create", "table": ix.table, "index": ix.name, "status": "refused", "statement": statement,
                "error": str(err)}  # fmt: skip
    p = plan.indexes
    result = target.create_index(
        ix, lock_timeout_s=p.lock_timeout_s, statement_timeout_s=p.statement_timeout_s, retries=p.retries
    )
    return result.to_dict() | {"guardrails": guard}


def verify_plans(target: Target, specs: list[dict[str, Any]], queries: list[dict[str, Any]]) -> dict[str, Any]:
    """Which benchmark queries the planner now answers with each new index (EXPLAIN after the build)."""
    used_by: dict[str, list[str]] = {s["name"]: [] for s in specs}
    plans: dict[str, list[str]] = {}
    for q in queries:
        explain = target.explain(q["sql"][0])
        plans[q["name"]] = sorted(explain.indexes_used())
        for name in explain.indexes_used() & used_by.keys():
            used_by[name].append(q["name"])
    sizes = {ix.name: ix.size_bytes for ix in target.indexes() if ix.name in used_by}
    return {"used_by": used_by, "indexes_per_query": plans, "sizes": sizes, "method": "EXPLAIN after build"}


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
    comparison = compare(BenchResult.from_dict(before), measured_after, min_effect=b.min_effect, alpha=b.alpha)
    verdicts = {q.name: q.verdict for q in comparison.queries}
    decisions = []
    for ddl in created:
        if ddl["status"] not in ("created", "exists", "dry_run"):
            continue
        served = verification["used_by"].get(ddl["index"], [])
        got = {q: verdicts.get(q, "inconclusive") for q in served}
        if not served:
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


def revert_indexes(
    plan: Plan, target: Target, advice: dict[str, Any], decision: dict[str, Any], dry_run: bool
) -> list[dict[str, Any]]:
    """Drop exactly the indexes this run created and judged useless (never a pre-existing one)."""
    preexisting = set(advice["preexisting"])
    results = []
    for d in decision["indexes"]:
        if d["keep"] or d["index"] in preexisting:
            continue
        if dry_run:
            results.append({"action": "drop", "table": d["table"], "index": d["index"], "status": "dry_run"})
            continue
        r = target.drop_index(d["table"], d["index"], lock_timeout_s=plan.indexes.lock_timeout_s,
                              retries=plan.indexes.retries)  # fmt: skip
        results.append(r.to_dict())
    return results


def revert_kept(plan: Plan, target: Target, advice: dict[str, Any], decision: dict[str, Any]) -> list[dict[str, Any]]:
    """After a canary rollback (when the plan says so): drop what this run built and kept, too."""
    everything = decision | {"indexes": [d | {"keep": False} for d in decision.get("indexes", []) if d["keep"]]}
    return revert_indexes(plan, target, advice, everything, dry_run=False)


def drop_unused(plan: Plan, target: Target, advice: dict[str, Any], dry_run: bool) -> list[dict[str, Any]]:
    """Drop the existing indexes the advisor reports unused or redundant — only if the plan allows it.

    The backup step already saved these tables' DDL (index definitions included), so each drop can be
    undone from it. Unique and primary-key indexes are never candidates.
    """
    if not plan.indexes.allow_drops:
        return []
    results = []
    for d in advice["drop_candidates"]:
        if dry_run:
            results.append({"action": "drop", "table": d["table"], "index": d["index"], "status": "dry_run",
                            "reason": d["reason"]})  # fmt: skip
            continue
        r = target.drop_index(d["table"], d["index"], lock_timeout_s=plan.indexes.lock_timeout_s,
                              retries=plan.indexes.retries)  # fmt: skip
        results.append(r.to_dict() | {"reason": d["reason"]})
    return results


def backup_tables(plan: Plan, advice: dict[str, Any], scope: Iterable[str]) -> list[str]:
    """The tables a run may change: those it builds on, and those it may drop indexes from."""
    tables = {s["table"] for s in advice["create"]}
    if plan.indexes.allow_drops:
        tables |= {d["table"] for d in advice["drop_candidates"]}
    return sorted(tables) or list(scope)
