"""Cloud SQL downsizing by replica (week-17 plan, seed 001 day 7, and its rollback procedure).

Instead of patching the primary's tier in place (a restart, and no way to know beforehand whether the
smaller machine copes), dbopt:

1. creates a read replica of the primary on the smaller ``tier`` (``instances.insert`` with
   ``masterInstanceName``) and waits until it is RUNNABLE (``ready_timeout_s``); a replica that fails
   is deleted again and nothing else changes;
2. benchmarks it against the primary with the index benchmark's statistics (``dbopt.bench``: the same
   queries, primary and replica ABBA-interleaved, bootstrap CI of the median ratio per query) and the
   plan's latency targets; it *holds* when no query is significantly slower and every target is met;
3. only then promotes it (``promoteReplica``): it becomes the primary the application is switched to,
   and the old instance stays as a standby, labelled ``dbopt-standby-until=<unix seconds>``;
   otherwise the replica is deleted and nothing is switched;
4. ``cleanup_standbys`` (a later run) deletes a labelled standby once that time has passed, never earlier;
5. ``rollback`` either switches back (the standby becomes the active instance again, the new one the
   standby) or patches the new instance's tier back to the old one.

Every step is recorded; a dry run lists the steps with their parameters and calls nothing that changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from dbopt.bench import BenchQuery, check_plan_targets, compare, interleave_targets
from dbopt.cache.warm import hot_statements
from dbopt.cloud.cloudsql import CloudSQL
from dbopt.cloud.gcp import CloudError
from dbopt.plan import CloudSqlInstance, Plan
from dbopt.targets.base import Data, Target

log = logging.getLogger(__name__)

STANDBY_LABEL = "dbopt-standby-until"  # unix seconds; label values allow digits only, not ISO times
REPLACED_BY_LABEL = "dbopt-replaced-by"
PREVIOUS_TIER_LABEL = "dbopt-previous-tier"

StepStatus = Literal["done", "planned", "failed", "skipped"]


@dataclass(frozen=True)
class ResizeSpec(Data):
    project: str
    instance: str  # the primary today
    replica: str  # name of the smaller replica (its database is reached through the plan's replica_conn_id)
    tier: str
    standby_hours: float = 48.0
    ready_timeout_s: float = 3600.0


@dataclass(frozen=True)
class ReplicaBench(Data):
    holds: bool
    reason: str
    comparison: dict[str, Any]  # dbopt.bench Comparison (primary = before, replica = after)
    targets: dict[str, Any] | None  # PlanTargetReport on the replica, when the plan sets targets


@dataclass(frozen=True)
class ResizeStep(Data):
    name: str
    status: StepStatus
    detail: str


@dataclass(frozen=True)
class ResizeResult(Data):
    decision: Literal["switched", "not_switched", "failed", "unchanged", "dry_run"]
    reason: str
    active_instance: str
    standby_instance: str | None
    standby_until: str | None  # ISO 8601 UTC
    previous_tier: str
    tier: str
    steps: tuple[ResizeStep, ...] = field(default_factory=tuple)
    benchmark: ReplicaBench | None = None
    seconds: float = 0.0


def bench_replica(
    primary: Target,
    replica: Target,
    queries: list[BenchQuery],
    *,
    iterations: int,
    warmup: int,
    rounds: int = 5,
    min_effect: float = 0.10,
    alpha: float = 0.01,
    targets: dict[str, float] | None = None,
) -> ReplicaBench:
    """Same queries on both, ABBA-interleaved, same statistics as the index benchmark; holds = nothing
    slower, targets met."""
    before, after = interleave_targets(primary, replica, queries, rounds=rounds, iterations=iterations, warmup=warmup)
    comparison = compare(before, after, min_effect=min_effect, alpha=alpha, design="ab_interleaved")
    slower = [q.name for q in comparison.queries if q.verdict == "regressed"]
    report = check_plan_targets(after, targets) if targets else None
    missed = (
        [f"{c.query} {c.metric} {c.measured_ms:.2f} > {c.limit_ms:g} ms" for c in report.failures()] if report else []
    )
    if slower or missed:
        parts = [f"slower on the replica: {', '.join(slower)}" if slower else "", "; ".join(missed)]
        reason = "; ".join(p for p in parts if p)
    else:
        reason = f"no query slower by {min_effect:.0%} or more (alpha {alpha:g})" + (
            "; plan targets met" if report else ""
        )
    return ReplicaBench(not (slower or missed), reason, comparison.to_dict(), report.to_dict() if report else None)


def spec_from_plan(cloud_sql: CloudSqlInstance) -> ResizeSpec:
    resize = cloud_sql.resize
    if resize is None:
        raise ValueError(f"{cloud_sql.instance}: no cloud_sql.resize section; add one with tier and replica_conn_id")
    return ResizeSpec(cloud_sql.project, cloud_sql.instance, resize.replica or f"{cloud_sql.instance}-resized",
                      resize.tier, resize.standby_hours, resize.ready_timeout_s)  # fmt: skip


def plan_replica_bench(plan: Plan, primary: Target, replica: Target) -> ReplicaBench:
    """The plan's benchmark (its queries, or the primary's top read statements) on both, as the index path runs it."""
    b = plan.benchmark
    queries = [BenchQuery(q.name, q.sql if isinstance(q.sql, str) else tuple(q.sql)) for q in b.queries]
    if not queries:
        queries = [
            BenchQuery(i.name, i.sql) for i in hot_statements(primary.workload(), b.from_workload, primary.dialect)
        ]
    if not queries:
        raise ValueError(f"plan {plan.id!r}: no benchmark query to judge the replica; list benchmark.queries")
    rounds = min(5, b.iterations)  # as the index benchmark spreads the plan's iterations
    return bench_replica(primary, replica, queries, iterations=-(-b.iterations // rounds), warmup=b.warmup,
                         rounds=rounds, min_effect=b.min_effect, alpha=b.alpha, targets=b.targets or None)  # fmt: skip


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


class _Steps:
    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.steps: list[ResizeStep] = []

    def add(self, name: str, detail: str, status: StepStatus | None = None) -> None:
        status = status or ("planned" if self.dry_run else "done")
        log.info("%s%s: %s", "[dry run] " if self.dry_run else "", name, detail)
        self.steps.append(ResizeStep(name, status, detail))


def resize_by_replica(
    sql: CloudSQL,
    spec: ResizeSpec,
    benchmark: Callable[[], ReplicaBench],
    *,
    now: float | None = None,
    dry_run: bool = False,
) -> ResizeResult:
    """The whole procedure; ``benchmark`` runs when the replica is ready (it opens the two databases)."""
    started = time.monotonic()
    now = time.time() if now is None else now
    steps = _Steps(dry_run)
    previous = sql.tier(spec.instance)
    until = now + spec.standby_hours * 3600

    def result(decision: Any, reason: str, active: str, standby: str | None = None, **more: Any) -> ResizeResult:
        return ResizeResult(
            decision,
            reason,
            active,
            standby,
            _iso(until) if standby else None,
            previous,
            spec.tier,
            tuple(steps.steps),
            seconds=round(time.monotonic() - started, 3),
            **more,
        )

    if previous == spec.tier:
        steps.add("check", f"{spec.instance} already runs {spec.tier}", "skipped")
        return result("unchanged", f"{spec.instance} already runs tier {spec.tier}", spec.instance)
    steps.add("check", f"{spec.instance} runs {previous}; target tier {spec.tier}")
    if dry_run:
        steps.add(
            "create_replica",
            f"instances.insert {spec.replica} (masterInstanceName {spec.instance}, "
            f"tier {spec.tier}); wait up to {spec.ready_timeout_s:g} s for RUNNABLE",
        )
        steps.add(
            "benchmark",
            f"the plan's benchmark on {spec.instance} and on {spec.replica}; holds if no "
            "query is significantly slower and the plan targets are met; else delete the replica",
        )
        steps.add("promote", f"instances.promoteReplica {spec.replica}: switch the application to it")
        steps.add(
            "standby",
            f"keep {spec.instance} on {previous} as standby until {_iso(until)} "
            f"(label {STANDBY_LABEL}); a later run deletes it after that",
        )
        return result("dry_run", "dry run: nothing created, promoted or deleted", spec.instance)

    try:
        sql.create_replica(spec.instance, spec.replica, spec.tier, timeout_s=spec.ready_timeout_s)
        state = sql.instance(spec.replica).get("state")
        if state != "RUNNABLE":
            raise CloudError(f"replica {spec.replica} is {state}, not RUNNABLE")
    except CloudError as err:
        steps.add("create_replica", f"{spec.replica} did not become ready: {err}", "failed")
        _drop_replica(sql, spec.replica, steps)
        return result("failed", f"replica {spec.replica} never became ready; nothing switched", spec.instance)
    steps.add("create_replica", f"{spec.replica} on {spec.tier} is RUNNABLE")

    verdict = benchmark()
    steps.add("benchmark", verdict.reason, "done" if verdict.holds else "failed")
    if not verdict.holds:
        _drop_replica(sql, spec.replica, steps)
        return result("not_switched", f"the replica does not hold: {verdict.reason}", spec.instance, benchmark=verdict)

    sql.promote_replica(spec.replica)
    steps.add("promote", f"{spec.replica} promoted: the new primary on {spec.tier}")
    sql.set_labels(spec.replica, {PREVIOUS_TIER_LABEL: previous})
    sql.set_labels(spec.instance, {STANDBY_LABEL: str(int(until)), REPLACED_BY_LABEL: spec.replica})
    steps.add("standby", f"{spec.instance} ({previous}) kept as standby until {_iso(until)}")
    return result(
        "switched",
        f"{spec.replica} on {spec.tier} holds: {verdict.reason}",
        spec.replica,
        spec.instance,
        benchmark=verdict,
    )


def _drop_replica(sql: CloudSQL, replica: str, steps: _Steps) -> None:
    try:
        sql.delete_instance(replica)
        steps.add("delete_replica", f"{replica} deleted")
    except CloudError as err:
        steps.add("delete_replica", f"{replica} could not be deleted ({err}); delete it by hand", "failed")


@dataclass(frozen=True)
class StandbyAction(Data):
    instance: str
    until: str
    action: Literal["deleted", "kept", "would_delete"]
    hours_left: float


def cleanup_standbys(sql: CloudSQL, *, now: float | None = None, dry_run: bool = False) -> list[StandbyAction]:
    """Delete every standby whose ``dbopt-standby-until`` has passed; younger ones are kept."""
    now = time.time() if now is None else now
    actions = []
    for found in sql.list_instances():
        label = found.get("settings", {}).get("userLabels", {}).get(STANDBY_LABEL)
        if label is None:
            continue
        if not label.isdigit():
            raise CloudError(f"{found['name']}: label {STANDBY_LABEL}={label!r} is not unix seconds; fix or remove it")
        left = (int(label) - now) / 3600
        if left > 0:
            actions.append(StandbyAction(found["name"], _iso(int(label)), "kept", round(left, 2)))
            continue
        if not dry_run:
            sql.delete_instance(found["name"])
        actions.append(StandbyAction(found["name"], _iso(int(label)), "would_delete" if dry_run else "deleted", 0.0))
        log.info("standby %s (until %s): %s", found["name"], _iso(int(label)), actions[-1].action)
    return actions


def rollback(
    sql: CloudSQL,
    spec: ResizeSpec,
    how: Literal["switch_back", "tier"],
    *,
    now: float | None = None,
    dry_run: bool = False,
) -> list[ResizeStep]:
    """Undo a switch: back to the standby (it stays, the new instance becomes the standby), or tier patch."""
    now = time.time() if now is None else now
    steps = _Steps(dry_run)
    new = sql.instance(spec.replica)
    previous = new.get("settings", {}).get("userLabels", {}).get(PREVIOUS_TIER_LABEL)
    if how == "tier":
        if not previous:
            raise CloudError(f"{spec.replica} has no {PREVIOUS_TIER_LABEL} label: it was not switched by dbopt")
        if not dry_run:
            sql.set_tier(spec.replica, previous)
        steps.add("tier", f"{spec.replica} patched back to {previous} (restarts); {spec.instance} stays standby")
        return steps.steps
    old = sql.instance(spec.instance)  # must still exist: the standby period is what makes this possible
    until = now + spec.standby_hours * 3600
    if not dry_run:
        sql.set_labels(spec.instance, {STANDBY_LABEL: None, REPLACED_BY_LABEL: None})
        sql.set_labels(spec.replica, {STANDBY_LABEL: str(int(until)), REPLACED_BY_LABEL: spec.instance})
    steps.add(
        "switch_back",
        f"{spec.instance} ({old['settings']['tier']}) is the active instance again; switch the "
        f"application back to it; {spec.replica} is standby until {_iso(until)}",
    )
    return steps.steps
