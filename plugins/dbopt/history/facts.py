"""Plain facts drawn from a run record (``dbopt.run_record.collect``), for the history and the reports.

A record may be partial: a NO-GO run has only the gate, a failed build has no benchmark after, a dry
run changed nothing, a run without deploy has no canary. Every function here returns what the
record holds and nothing it does not (missing parts give empty lists or None, never a guess).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Record = Mapping[str, Any]


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def targets(record: Record) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, data in _dict(record.get("targets")).items():
        yield name, _dict(data)


def is_dry_run(record: Record) -> bool:
    return bool(_dict(record.get("params")).get("dry_run"))


def gate(record: Record) -> dict[str, Any] | None:
    """The health check's result (decision, reason, figures) or None when it did not run."""
    value = _dict(record.get("tasks")).get("health_check")
    return _dict(value) or None


def gate_figures(record: Record) -> list[dict[str, Any]]:
    """Every figure with the target it was measured for ("" for run-wide figures). The health check
    returns one gate result per target under "targets" (``pipeline.gate_decision``)."""
    result = gate(record) or {}
    figures = [{"target": "", **_dict(f)} for f in _list(result.get("figures"))]
    for name, per_target in _dict(result.get("targets")).items():
        figures += [{"target": name, **_dict(f)} for f in _list(_dict(per_target).get("figures"))]
    return figures


def statements(record: Record) -> list[dict[str, Any]]:
    """The workload snapshot: every target's extracted statements, in the order extracted (top first)."""
    rows = []
    for name, data in targets(record):
        for rank, stmt in enumerate(_list(data.get("extract")), start=1):
            rows.append({"target": name, "rank": rank, **_dict(stmt)})
    return rows


def _summaries(bench: Any) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in (_dict(x) for x in _list(_dict(bench).get("queries"))) if "name" in q}


def bench_rows(record: Record) -> list[dict[str, Any]]:
    """Per target and query: before and after summaries (either may be missing) and the judged comparison.

    "before" is the arm the verdict compared: bench_after's interleaved before arm where there is one.
    """
    rows = []
    for name, data in targets(record):
        judged_before = _dict(data.get("bench_after")).get("before_arm") or data.get("bench_before")
        before, after = _summaries(judged_before), _summaries(data.get("bench_after"))
        comparison_queries = _list(_dict(_dict(data.get("judge")).get("comparison")).get("queries"))
        judged = {q.get("name"): q for q in (_dict(x) for x in comparison_queries)}
        for query in [*before, *(q for q in after if q not in before)]:
            comparison = _dict(judged.get(query))
            rows.append(
                {
                    "target": name,
                    "query": query,
                    "before": _dict(before.get(query, {}).get("summary")) or None,
                    "after": _dict(after.get(query, {}).get("summary")) or None,
                    "before_method": _dict(judged_before).get("method"),
                    "after_method": _dict(data.get("bench_after")).get("method"),
                    "before_samples": _list(before.get(query, {}).get("samples")),
                    "after_samples": _list(after.get(query, {}).get("samples")),
                    "verdict": comparison.get("verdict") or _dict(comparison.get("result")).get("verdict"),
                    "result": _dict(comparison.get("result")) or None,
                }
            )
    return rows


def _sizes(data: dict[str, Any]) -> dict[str, int]:
    """Measured sizes of the new indexes, where a step reported them (catalog size after the build)."""
    sizes: dict[str, int] = {}
    for source in (_dict(data.get("verify")).get("sizes"), _dict(data.get("judge")).get("sizes")):
        sizes.update({k: v for k, v in _dict(source).items() if isinstance(v, int)})
    for ddl in _list(data.get("create_index")):
        ddl = _dict(ddl)
        if isinstance(ddl.get("size_bytes"), int):
            sizes[ddl.get("index", "")] = ddl["size_bytes"]
    return sizes


def index_changes(record: Record) -> list[dict[str, Any]]:
    """Every index build and drop of the run with its DDL, measured size, keep/revert and reason."""
    rows = []
    for name, data in targets(record):
        sizes = _sizes(data)
        ddl_by_name = _dict(_dict(data.get("advise")).get("ddl"))
        judged = {d.get("index"): d for d in (_dict(x) for x in _list(_dict(data.get("judge")).get("indexes")))}
        for ddl in (_dict(x) for x in _list(data.get("create_index"))):
            index = ddl.get("index", "")
            decision = _dict(judged.get(index))
            rows.append(
                {
                    "target": name,
                    "action": "create",
                    "table": ddl.get("table"),
                    "index": index,
                    "status": ddl.get("status"),
                    "statement": ddl.get("statement") or ddl_by_name.get(index),
                    "size_bytes": sizes.get(index),
                    "duration_ms": ddl.get("duration_ms"),
                    "attempts": ddl.get("attempts"),
                    "error": ddl.get("error"),
                    "kept": decision.get("keep") if decision else None,
                    "reason": decision.get("reason"),
                }
            )
        for ddl in (_dict(x) for x in _list(data.get("revert_indexes"))):
            rows.append(
                {
                    "target": name,
                    "action": "drop",
                    "table": ddl.get("table"),
                    "index": ddl.get("index", ""),
                    "status": ddl.get("status"),
                    "statement": ddl.get("statement"),
                    "size_bytes": None,
                    "duration_ms": ddl.get("duration_ms"),
                    "attempts": ddl.get("attempts"),
                    "error": ddl.get("error"),
                    "kept": False,
                    "reason": _dict(judged.get(ddl.get("index"))).get("reason"),
                }
            )
    return rows


def recommendations(record: Record) -> list[dict[str, Any]]:
    rows = []
    for name, data in targets(record):
        advice = _dict(data.get("advise"))
        for rec in (_dict(x) for x in _list(advice.get("recommendations"))):
            rows.append({"target": name, **rec})
    return rows


def drop_candidates(record: Record) -> list[dict[str, Any]]:
    return [
        {"target": name, **_dict(d)}
        for name, data in targets(record)
        for d in _list(_dict(data.get("advise")).get("drop_candidates"))
    ]


def canary(record: Record) -> dict[str, Any] | None:
    """Deploy, monitoring decision with its evidence, and what followed (promote or rollback)."""
    tasks = _dict(record.get("tasks"))
    parts = {k: tasks.get(k) for k in ("deploy_canary", "monitor_canary", "promote", "rollback")}
    if not any(parts.values()):
        return None
    monitor = _dict(parts["monitor_canary"])
    return {
        "deploy": parts["deploy_canary"],
        "decision": monitor.get("decision"),
        "reason": monitor.get("reason"),
        "checks": monitor.get("checks"),
        "failures": monitor.get("failures"),
        "inconclusives": monitor.get("inconclusives"),
        "evidence": [_dict(r) for r in _list(_dict(monitor.get("evidence")).get("results"))],
        "history": _list(monitor.get("history")),
        "promoted": parts["promote"] is not None,
        "rolled_back": parts["rollback"] is not None,
        "promote": parts["promote"],
        "rollback": parts["rollback"],
    }


def outcome(record: Record) -> str:
    """One word for the run: no_go, failed, rolled_back, promoted, kept, reverted, no_change, incomplete;
    prefixed "dry_run:" when nothing was changed on purpose."""
    decision = (gate(record) or {}).get("decision")
    changes = index_changes(record)
    can = canary(record) or {}
    if decision == "NO-GO":
        word = "no_go"
    elif any(c["status"] == "failed" for c in changes) or record.get("first_failure"):
        word = "failed"
    elif can.get("rolled_back"):
        word = "rolled_back"
    elif can.get("promoted"):
        word = "promoted"
    elif any(c["kept"] for c in changes if c["action"] == "create"):
        word = "kept"
    elif any(c["action"] == "create" for c in changes):
        word = "reverted"
    elif any(d.get("judge") or d.get("advise") is not None for _, d in targets(record)):
        word = "no_change"
    else:
        word = "incomplete"
    return f"dry_run:{word}" if is_dry_run(record) and word != "no_go" else word


def workload_latency(record: Record) -> dict[str, float] | None:
    """The measured workload's calls-weighted mean latency (Σ total_ms / Σ calls) and its total time."""
    stmts = statements(record)
    calls = sum(int(s.get("calls") or 0) for s in stmts)
    total = sum(float(s.get("total_ms") or 0.0) for s in stmts)
    if not calls:
        return None
    return {"mean_ms": total / calls, "total_ms": total, "calls": calls, "statements": len(stmts)}
