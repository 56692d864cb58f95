"""Plain facts drawn from a run record (``dbopt.run_record.collect``), for the history and the reports.

The record holds each declared step's result (``dbopt.steps``) by scope and name; this module reads
them back as their typed results. A record may be partial: a NO-GO run has only the gate, a failed
build has no benchmark after, a dry run changed nothing, a run without deploy has no canary. Every
function here returns what the record holds and nothing it does not (missing parts give empty lists
or None, never a guess).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from dbopt import steps
from dbopt.results import Advice, Bench, Gate, Judgement, Verification, Workload

Record = Mapping[str, Any]
# The one step that drops indexes the run did not build; every other drop takes back this run's own.
UNUSED_DROP_STEP = "drop_unused"


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def targets(record: Record) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each target's part of the record as stored (dialect, conn_id, results, skipped)."""
    for name, data in _dict(record.get("targets")).items():
        yield name, _dict(data)


def results(data: Mapping[str, Any]) -> dict[str, Any]:
    """One target's (or canary's) stored results as their declared types, by step name."""
    scope = steps.SERVICE_STEPS if "service" in data else steps.TARGET_STEPS
    return steps.load(scope, data)


def canaries(record: Record) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, data in _dict(record.get("canaries")).items():
        yield key, _dict(data)


def is_dry_run(record: Record) -> bool:
    return bool(_dict(record.get("params")).get("dry_run"))


def gate(record: Record) -> Gate | None:
    """The health check's result, or None when it did not run."""
    value = _dict(record.get("tasks")).get("health_check")
    return Gate.from_dict(value) if value else None


def gate_figures(record: Record) -> list[dict[str, Any]]:
    """Every figure with the target it was measured for."""
    result = gate(record)
    return result.figures() if result else []


def statements(record: Record) -> list[dict[str, Any]]:
    """The workload snapshot: every target's extracted statements, in the order extracted (top first)."""
    rows = []
    for name, data in targets(record):
        workload: Workload | None = results(data)["extract"]
        for rank, stmt in enumerate(workload.statements if workload else (), start=1):
            rows.append({"target": name, "rank": rank, **stmt.to_dict()})
    return rows


def bench_rows(record: Record) -> list[dict[str, Any]]:
    """Per target and query: before and after summaries (either may be missing) and the judged comparison.

    "before" is the arm the verdict compared: bench_after's interleaved before arm where there is one.
    """
    rows = []
    for name, data in targets(record):
        r = results(data)
        after_arm: Bench | None = r["bench_after"]
        # the arm the verdict compared: bench_after's interleaved before arm where there is one
        interleaved = after_arm.extra.get("before_arm") if after_arm else None
        arms = (Bench.from_dict(interleaved) if interleaved else r["bench_before"], after_arm)
        before, after = (arm.summaries() if arm else {} for arm in arms)
        judgement: Judgement | None = r["judge"]
        judged = judgement.query_verdicts() if judgement else {}
        for query in [*before, *(q for q in after if q not in before)]:
            comparison = _dict(judged.get(query))
            rows.append(
                {
                    "target": name,
                    "query": query,
                    "before": _dict(before.get(query, {}).get("summary")) or None,
                    "after": _dict(after.get(query, {}).get("summary")) or None,
                    "before_method": arms[0].method if arms[0] else None,
                    "after_method": arms[1].method if arms[1] else None,
                    "before_samples": list(before.get(query, {}).get("samples") or ()),
                    "after_samples": list(after.get(query, {}).get("samples") or ()),
                    "verdict": comparison.get("verdict") or _dict(comparison.get("result")).get("verdict"),
                    "result": _dict(comparison.get("result")) or None,
                }
            )
    return rows


def _sizes(r: Mapping[str, Any]) -> dict[str, int]:
    """Measured sizes of the new indexes (catalog size after the build, from the verification)."""
    verification: Verification | None = r["verify"]
    return {k: v for k, v in (verification.sizes if verification else {}).items() if isinstance(v, int)}


def index_changes(record: Record) -> list[dict[str, Any]]:
    """Every index build and drop of the run — every step that changes the database, canary reverts
    included — with its DDL, measured size, keep/revert and reason. ``done``: it happened (a dry
    run, a refusal or a failure did not); ``kept`` is judged only for a build that happened.
    ``decision``: keep | revert for a judged build, revert for a drop that takes back this run's
    index, unused for a ``drop_unused`` drop (an existing index), None when nothing was decided."""
    rows = []
    for name, data in targets(record):
        r = results(data)
        advice: Advice | None = r["advise"]
        judgement: Judgement | None = r["judge"]
        sizes = _sizes(r)
        for step, c in steps.index_changes(steps.TARGET_STEPS, r):
            verdict = judgement.verdict(c.index) if judgement and c.action == "create" else None
            kept = (verdict.keep if verdict else None) if c.action == "create" else False
            rows.append(
                _change_row(name, step, c, kept)
                | {
                    "statement": c.statement or (advice.ddl.get(c.index) if advice else None),
                    "size_bytes": sizes.get(c.index) if c.action == "create" else None,
                    "reason": (verdict.reason if verdict else None) or c.reason,
                }
            )
    for _, data in canaries(record):
        for step, c in steps.index_changes(steps.SERVICE_STEPS, results(data)):
            rows.append(_change_row(c.target, step, c, False) | {"reason": c.reason})
    return rows


def _decision(step: steps.Step, action: str, kept: bool | None) -> str | None:
    if kept is None:
        return None
    if action == "drop":
        return "unused" if step.name == UNUSED_DROP_STEP else "revert"
    return "keep" if kept else "revert"


def _change_row(target: str, step: steps.Step, c: Any, kept: bool | None) -> dict[str, Any]:
    kept = kept if c.done else None
    return {
        "target": target,
        "step": step.name,
        "action": c.action,
        "table": c.table,
        "index": c.index,
        "status": c.status,
        "done": c.done,
        "statement": c.statement or None,
        "size_bytes": None,
        "duration_ms": c.duration_ms,
        "attempts": c.attempts,
        "error": c.error,
        "kept": kept,
        "decision": _decision(step, c.action, kept),
    }


def recommendations(record: Record) -> list[dict[str, Any]]:
    return [
        {"target": name, **rec}
        for name, data in targets(record)
        for rec in (getattr(results(data)["advise"], "recommendations", None) or ())
    ]


def drop_candidates(record: Record) -> list[dict[str, Any]]:
    return [
        {"target": name, **d}
        for name, data in targets(record)
        for d in (getattr(results(data)["advise"], "drop_candidates", None) or ())
    ]


def canary_views(record: Record) -> list[dict[str, Any]]:
    """Per Cloud Run service: deploy, the analysis' decision with its evidence, and what followed."""
    views = []
    for key, data in canaries(record):
        r = results(data)
        if not any(r[s] for s in ("deploy", "monitor", "promote", "rollback")):
            continue
        monitor = r["monitor"]
        deploy = r["deploy"].to_dict() if r["deploy"] else {}
        views.append(
            {
                "service": key,
                "name": data.get("service"),
                "region": data.get("region"),
                "target": data.get("target"),
                "on_region_failure": data.get("on_region_failure"),
                "deploy": deploy or None,
                "old_revision": deploy.get("previous_revision"),
                "new_revision": deploy.get("new_revision"),
                "traffic_steps": _traffic_steps(r, deploy.get("new_revision")),
                "passed_earlier": list(monitor.passed_earlier) if monitor else [],
                "decision": monitor.decision if monitor else None,
                "reason": monitor.reason if monitor else None,
                "checks": monitor.checks if monitor else None,
                "failures": monitor.failures if monitor else None,
                "inconclusives": monitor.inconclusives if monitor else None,
                "evidence": [_dict(e) for e in (monitor.evidence or {}).get("results") or ()] if monitor else [],
                "history": list(monitor.history) if monitor else [],
                "promoted": r["promote"] is not None,
                "rolled_back": r["rollback"] is not None,
                "promote": r["promote"].to_dict() if r["promote"] else None,
                "rollback": r["rollback"].to_dict() if r["rollback"] else None,
            }
        )
    return views


def _traffic_steps(r: Mapping[str, Any], new_revision: str | None) -> list[dict[str, Any]]:
    """Each traffic step of a canary with its times, verdict and analysis outcome (``evidence``), as
    recorded. A stepped canary records its steps; a single-share canary is one step: the share Cloud
    Run reported after the shift, timed by its analysis."""
    monitor = r["monitor"]
    if monitor is None:
        return []
    if monitor.steps:  # numbered as in the plan: a resumed retry starts after the steps it passed earlier
        return [dict(s) | {"number": len(monitor.passed_earlier) + n} for n, s in enumerate(monitor.steps, 1)]
    shift = r.get("shift_traffic")
    traffic = (shift.extra.get("traffic") or ()) if shift else ()
    shares = [t.get("percent") for t in traffic if new_revision and t.get("revision") == new_revision]
    outcome = monitor.to_dict()
    return [
        {
            "percent": shares[0] if shares else None,
            "started_at": outcome.get("started_at"),
            "ended_at": outcome.get("decided_at"),
            "decision": monitor.decision,
            "reason": monitor.reason,
            "evidence": outcome,
        }
    ]


def canary_summary(record: Record) -> dict[str, str | None]:
    """Every service's decision and reason in one line each (for the history's run row)."""
    views = canary_views(record)
    return {
        "decision": ", ".join(f"{v['service']}: {v['decision']}" for v in views if v["decision"]) or None,
        "reason": "; ".join(f"{v['service']}: {v['reason']}" for v in views if v["reason"]) or None,
    }


def outcome(record: Record) -> str:
    """One word for the run: no_go, failed, rolled_back, promoted, kept, reverted, dropped, no_change,
    incomplete; prefixed "dry_run:" when nothing was changed on purpose."""
    result = gate(record)
    changes = index_changes(record)
    views = canary_views(record)
    builds = [c for c in changes if c["action"] == "create" and c["step"] == "create_index"]
    if result is not None and result.decision == "NO-GO":
        word = "no_go"
    elif any(c["status"] == "failed" for c in changes) or record.get("first_failure"):
        word = "failed"
    elif any(v["rolled_back"] for v in views):
        word = "rolled_back"
    elif any(v["promoted"] for v in views):
        word = "promoted"
    elif any(c["kept"] for c in builds):
        word = "kept"
    elif any(c["done"] for c in builds):
        word = "reverted"
    elif any(c["done"] and c["step"] == UNUSED_DROP_STEP for c in changes):
        word = "dropped"
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
