"""The weekly steps, declared once: name, function, typed result, what the report calls it, whether it
changes the database, which earlier results it reads.

Three scopes, each an ordered tuple: ``RUN_STEPS`` (once per run), ``TARGET_STEPS`` (per database
target) and ``SERVICE_STEPS`` (per Cloud Run service). ``dbopt.weekly_dag`` builds the tasks from
them, ``dbopt apply`` walks them in order (``run_target``), ``dbopt.run_record`` collects each step's
result by name and ``dbopt.history.facts`` reads the results back as the declared types. A step whose
``run`` is None is an Airflow operator (Cloud Run, Cloud SQL): the DAG builds it, the CLI skips it
with ``cli_skip`` as the reason. A run step with ``after_rollout`` runs once every target's work and
every canary have ended (cache warming, the scaling forecast); the others open the run.
Services a step reaches by connection id (Redis, Cloud SQL Admin, Prometheus, a replica's database)
come through ``StepContext.clients``: Airflow hooks in the DAG, absent in the CLI (the step then skips).

Adding a step: write its function (plain data in, a ``dbopt.results`` type out), add one ``Step`` to
the right tuple; the DAG, the CLI, the record and the report follow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbopt import pipeline
from dbopt.plan import CloudSqlInstance, Plan, TargetSpec
from dbopt.results import (
    Advice,
    Backup,
    Bench,
    CacheWarm,
    CanaryOutcome,
    CloudSqlResize,
    Gate,
    IndexChange,
    IndexChanges,
    Judgement,
    Result,
    RollbackReverts,
    RolloutStep,
    ScalingForecast,
    Verification,
    Workload,
)
from dbopt.targets.base import Data, IndexSpec, Target


class Skip(Exception):
    """A step with nothing to do this run; the message says why (shown in the record and the report)."""


@dataclass(frozen=True)
class Clients:
    """How a step reaches what the plan names by connection id (each None where the caller has no way)."""

    database: Callable[[str], AbstractContextManager[Target]] | None = None  # another database (no run lease)
    cloud_sql: Callable[[CloudSqlInstance], AbstractContextManager[Any]] | None = None  # dbopt.cloud.cloudsql.CloudSQL
    redis_url: Callable[[str], str] | None = None  # redis://host:port/db of a connection
    http_url: Callable[[str], str] | None = None  # a Prometheus connection's base URL


@dataclass(frozen=True)
class StepContext:
    """What a step's function gets: the plan, the run mode and the earlier results it declared."""

    plan: Plan
    dry_run: bool
    results: Mapping[str, Any] = field(default_factory=dict)  # step name → result (a tuple for mapped steps)
    spec: TargetSpec | None = None
    target: Target | None = None  # opened for target steps
    bench_target: Target | None = None  # replays: the same database as the benchmark user, if any
    item: Any = None  # the element a mapped step runs for
    reports_dir: Path = Path("reports")
    # run-scope steps open each target themselves (a connection id in Airflow, the URL in the CLI)
    open_target: Callable[[TargetSpec], AbstractContextManager[Target]] | None = None
    metrics: Callable[[], Any] | None = None  # the health gate's service metrics source, if any
    progress: Callable[[int, int], None] | None = None  # replays: (runs done, runs planned) as they go
    moments: Mapping[str, Any] = field(default_factory=dict)  # the run's moments the maintenance window checks
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # service steps: every target's results
    clients: Clients = Clients()

    def __getitem__(self, step: str) -> Any:
        return self.results[step]


def _always(_plan: Plan, _spec: TargetSpec | None) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    name: str  # the task id within its scope's task group
    title: str  # what the report calls it
    result: type[Result]
    run: Callable[[StepContext], Result] | None  # None: an Airflow operator (see the module doc)
    needs: tuple[str, ...] = ()  # earlier results of the same scope it reads
    after: tuple[str, ...] = ()  # earlier steps it must follow without reading them
    changes_db: bool = False  # its result lists index changes (``changes()``)
    items: Callable[[StepContext], Sequence[Data]] | None = None  # mapped: one run per item
    item_type: type[Data] | None = None
    applies: Callable[[Plan, TargetSpec | None], bool] = _always  # declared for this plan (and target)?
    retries: int | None = None
    after_failures: bool = False  # runs after failed builds too: what the others built is still judged
    replays: bool = False  # replays the application's queries: as the benchmark user where there is one
    # what the task log shows while it runs: "runs" (replays done/planned), "index_build" (the engine's progress)
    watch: str = ""
    quiet: bool = False  # its result is too big for the task log (the report shows it)
    cli_skip: str = ""  # why ``dbopt apply`` does not run an operator step
    after_rollout: bool = False  # run scope: after every target's work and every canary (see the module doc)

    @property
    def mapped(self) -> bool:
        return self.items is not None

    def load(self, value: Any) -> Any:
        """A stored result (XCom / record form) as its typed value; None stays None."""
        if value is None:
            return None
        if self.mapped:
            return tuple(self.result.from_dict(v) for v in value)
        return self.result.from_dict(value)

    def dump(self, value: Any) -> Any:
        if value is None:
            return None
        return [v.to_dict() for v in value] if self.mapped else value.to_dict()

    def execute(self, ctx: StepContext) -> Result:
        """Run once (for one item, when mapped); raises ``Skip`` when there is nothing to do."""
        if self.run is None:
            raise Skip(self.cli_skip)
        return self.run(ctx)


# --- the functions of the steps ------------------------------------------------------------------


def _health_check(ctx: StepContext) -> Gate:
    from dbopt.guardrails import window_gate
    from dbopt.metrics.health_gate import health_gate
    from dbopt.metrics.sources import DatabaseSource, RedisSource

    p = ctx.plan
    if (outside := window_gate(p, dict(ctx.moments))) is not None:
        return Gate.from_dict(outside)
    rules = pipeline.gate_rules(p.health_gate)
    results = {}
    assert ctx.open_target is not None
    for spec in p.targets:
        with ctx.open_target(spec) as target:
            pipeline.check_access(target, spec.tables)
            sources: dict[str, Any] = {
                "database": DatabaseSource(target=target, long_transaction_s=p.health_gate.long_transaction_s)
            }
            if ctx.metrics is not None:
                sources["metrics"] = ctx.metrics()
            if p.cache is not None and any(r.get("source") == "redis" for r in rules):
                sources["redis"] = RedisSource(_client(ctx.clients.redis_url, "Redis")(p.cache.redis_conn_id))
            if rules:
                results[spec.name] = health_gate(rules, sources).to_dict()
    if not rules:
        return Gate("GO", "the plan sets no health thresholds")
    return pipeline.gate_decision(p.health_gate, results)


def _advise(ctx: StepContext) -> Advice:
    workload: Workload = ctx["extract"]
    queries = pipeline.bench_queries(ctx.plan, [s.to_dict() for s in workload.statements], ctx.target.dialect)
    return pipeline.with_queries(pipeline.advise(ctx.plan, ctx.target, workload), queries)


def _backup(ctx: StepContext) -> Backup:
    if ctx.dry_run:
        raise Skip("dry run: no backup taken (nothing is changed)")
    advice: Advice = ctx["advise"]
    tables = pipeline.backup_tables(ctx.plan, advice, ctx.spec.tables)
    dest = ctx.reports_dir / "backups" / ctx.plan.id
    return Backup.of(ctx.target.backup(tables, dest, undo=advice.create))


def _benchmark(ctx: StepContext) -> Bench:
    queries = list(ctx["advise"].queries)
    return Bench.from_dict(pipeline.benchmark(ctx.plan, ctx.bench_target or ctx.target, queries, progress=ctx.progress))


def _benchmark_after(ctx: StepContext) -> Bench:
    """After the build: where the engine can hide the new indexes (as their owner), both arms
    interleaved now; elsewhere the after arm, judged against bench_before."""
    built = [c.to_dict() for c in ctx["create_index"]]
    queries = list(ctx["advise"].queries)
    replayer = ctx.bench_target or ctx.target
    result = pipeline.benchmark(ctx.plan, replayer, queries, built=built, owner=ctx.target, progress=ctx.progress)
    return Bench.from_dict(result)


def _judge(ctx: StepContext) -> Judgement:
    created = [c.to_dict() for c in ctx["create_index"]]
    verification = ctx["verify"].to_dict()
    before, after = ctx["bench_before"].to_dict(), ctx["bench_after"].to_dict()
    return Judgement.from_dict(pipeline.keep_or_revert(ctx.plan, created, verification, before, after))


def _revert(ctx: StepContext) -> IndexChanges:
    judgement: Judgement = ctx["judge"]
    if not judgement.revert:
        raise Skip("every index this run built was kept")
    return pipeline.revert_indexes(ctx.plan, ctx.target, ctx["advise"], judgement, ctx.dry_run)


def _revert_after_rollback(ctx: StepContext) -> RollbackReverts:
    """The rollback undoes this run's index changes as well (plan: monitor.revert_indexes_on_rollback)."""
    reverted = {}
    assert ctx.open_target is not None
    for spec in ctx.plan.targets:
        results = ctx.targets.get(spec.name) or {}
        if results.get("judge") is None or results.get("advise") is None:
            continue  # this target built nothing the canary could have used
        with ctx.open_target(spec) as target:
            drops = pipeline.revert_indexes(ctx.plan, target, results["advise"], results["judge"], False, kept_too=True)
        reverted[spec.name] = drops.indexes
    return RollbackReverts(reverted)


def _client(opener: Callable[..., Any] | None, what: str) -> Callable[..., Any]:
    if opener is None:
        raise Skip(f"needs {what}, reached through an Airflow connection: runs in the weekly DAG only")
    return opener


def _warm_cache(ctx: StepContext) -> CacheWarm:
    """Once the rollout has ended: the hot reads into Redis, the hit ratio measured just before and after."""
    import redis

    from dbopt.cache.plan_run import cache_target, measure_hit_ratio, warm_plan

    spec, target_spec = ctx.plan.cache, cache_target(ctx.plan)
    assert spec is not None and ctx.open_target is not None
    client = redis.Redis.from_url(_client(ctx.clients.redis_url, "Redis")(spec.redis_conn_id), socket_timeout=10)
    try:
        before = None if ctx.dry_run else measure_hit_ratio(client, spec.hit_ratio_window_s)
        with ctx.open_target(target_spec) as target:
            warmed = warm_plan(ctx.plan, target, client, dry_run=ctx.dry_run)
        after = None if ctx.dry_run else measure_hit_ratio(client, spec.hit_ratio_window_s)
    finally:
        client.close()
    return CacheWarm.from_dict(warmed.to_dict() | {"target": target_spec.name,
                               "hit_ratio_before": before and before.to_dict(),
                               "hit_ratio_after": after and after.to_dict()})  # fmt: skip


def _cloud_sql_resize(ctx: StepContext) -> CloudSqlResize:
    """Expired standbys deleted (never before standby_hours), then downsizing by replica (``dbopt.cloud.resize``)."""
    from dbopt.cloud.resize import ReplicaBench, cleanup_standbys, plan_replica_bench, resize_by_replica, spec_from_plan

    cloud_sql = ctx.spec.cloud_sql
    assert cloud_sql is not None and cloud_sql.resize is not None and ctx.target is not None
    database = _client(ctx.clients.database, "the replica's database")
    replica_conn_id = cloud_sql.resize.replica_conn_id

    def bench() -> ReplicaBench:  # the replica's database is opened only once it is ready
        with database(replica_conn_id) as replica:
            return plan_replica_bench(ctx.plan, ctx.target, replica)

    with _client(ctx.clients.cloud_sql, "Cloud SQL Admin")(cloud_sql) as sql:
        standbys = cleanup_standbys(sql, dry_run=ctx.dry_run)
        result = resize_by_replica(sql, spec_from_plan(cloud_sql), bench, dry_run=ctx.dry_run)
    return CloudSqlResize.from_dict(result.to_dict() | {"standbys": [a.to_dict() for a in standbys]})


def _scaling_forecast(ctx: StepContext) -> ScalingForecast:
    """What the plan's scaling rules set for the next hour, from the same traffic history the hourly
    ``dbopt_scaling`` DAG reads (read-only: nothing is applied here)."""
    import time
    from datetime import UTC, datetime

    from dbopt.cloud.forecast import HOUR_S, hour_start
    from dbopt.cloud.scaling import load_rules, next_hour

    spec = ctx.plan.scaling
    assert spec is not None
    rules = load_rules(spec.rules_path())
    services = {(s.name, s.region) for s in ctx.plan.deploy.services}
    wanted = [r for r in rules.rules if not services or r.key in services]
    if not wanted:
        raise Skip(f"{rules.source} has no rule for the plan's services {sorted(services)}")
    now = time.time()
    history: dict[tuple[str, str], dict[int, float]] = {}
    forecasts = any(r.forecast for r in wanted)
    source = "no metrics_conn_id: no history, the fixed windows decide" if forecasts else "no forecast block"
    if spec.metrics_conn_id and forecasts:
        from dbopt.cloud.forecast import PROMQL_PEAK_CONCURRENCY
        from dbopt.cloud.forecast_history import fetch_history
        from dbopt.cloud.scaling import ScalingRules

        url = _client(ctx.clients.http_url, "Prometheus")(spec.metrics_conn_id)
        history = fetch_history(url, ScalingRules(rules.source, tuple(wanted)), now)
        source = f"Prometheus {spec.metrics_conn_id}: hourly {PROMQL_PEAK_CONCURRENCY}"
    start = hour_start(now) + HOUR_S
    at = datetime.fromtimestamp(start, UTC)
    rows = [next_hour(r, at, history.get(r.key, {})).to_dict() for r in wanted]
    return ScalingForecast(spec.rules_file, start, tuple(rows), source)


def _has_cache(plan: Plan, _spec: TargetSpec | None) -> bool:
    return plan.cache is not None


def _has_scaling(plan: Plan, _spec: TargetSpec | None) -> bool:
    return plan.scaling is not None


def _resizes(_plan: Plan, spec: TargetSpec | None) -> bool:
    return spec is not None and spec.cloud_sql is not None and spec.cloud_sql.resize is not None


def _allows_drops(plan: Plan, _spec: TargetSpec | None) -> bool:
    return plan.indexes.allow_drops


def _has_cloud_sql(_plan: Plan, spec: TargetSpec | None) -> bool:
    return spec is not None and spec.cloud_sql is not None


def _single_share(plan: Plan, _spec: TargetSpec | None) -> bool:
    return not plan.deploy.steps


def _reverts_on_rollback(plan: Plan, _spec: TargetSpec | None) -> bool:
    return plan.monitor.revert_indexes_on_rollback


AIRFLOW_ONLY = "runs in the Airflow DAG only (a Google Cloud operator)"

RUN_STEPS: tuple[Step, ...] = (
    Step("health_check", "health gate (GO/NO-GO)", Gate, _health_check),
    Step("warm_cache", "cache warming", CacheWarm, _warm_cache, applies=_has_cache, after_rollout=True, retries=2),
    Step("scaling_forecast", "scaling for the next hour", ScalingForecast, _scaling_forecast, applies=_has_scaling,
         after_rollout=True),
)  # fmt: skip

TARGET_STEPS: tuple[Step, ...] = (
    Step("extract", "workload extraction", Workload, lambda c: pipeline.extract_workload(c.plan, c.spec, c.target)),
    Step("advise", "index advice", Advice, _advise, needs=("extract",)),
    Step("cloud_sql_backup", "Cloud SQL backup", RolloutStep, None, after=("advise",), applies=_has_cloud_sql,
         cli_skip=AIRFLOW_ONLY),
    Step("backup", "backup", Backup, _backup, needs=("advise",), after=("cloud_sql_backup",)),
    Step("bench_before", "benchmark before the change", Bench, _benchmark, needs=("advise",), after=("backup",),
         replays=True, watch="runs", quiet=True),
    Step("create_index", "index builds", IndexChange,
         lambda c: pipeline.create_index(c.plan, c.target, c.item, c.dry_run), needs=("advise",),
         after=("bench_before",), changes_db=True, items=lambda c: c["advise"].create, item_type=IndexSpec,
         retries=2, watch="index_build"),
    Step("verify", "plan verification (EXPLAIN)", Verification,
         lambda c: pipeline.verify_plans(c.target, c["create_index"], c["advise"].queries),
         needs=("create_index", "advise"), after_failures=True),
    Step("bench_after", "benchmark after the change", Bench, _benchmark_after, needs=("advise", "create_index"),
         after=("verify",), after_failures=True, replays=True, watch="runs", quiet=True),
    Step("judge", "keep/revert decision", Judgement, _judge,
         needs=("create_index", "verify", "bench_before", "bench_after"), after_failures=True, quiet=True),
    Step("revert_indexes", "revert of unhelpful indexes", IndexChanges, _revert, needs=("advise", "judge"),
         changes_db=True),
    # after keep/revert, so the new indexes' verdicts are not confounded by the drops
    Step("drop_unused", "drop of unused indexes", IndexChanges,
         lambda c: pipeline.drop_unused(c.plan, c.target, c["advise"], c.dry_run), needs=("advise",),
         after=("revert_indexes",), changes_db=True, applies=_allows_drops),
    # last: the replica copies the indexes this run kept, and the benchmark judges the machine, not them
    Step("cloud_sql_resize", "Cloud SQL downsizing by replica", CloudSqlResize, _cloud_sql_resize,
         after=("advise", "create_index", "revert_indexes", "drop_unused"), applies=_resizes, quiet=True,
         retries=0),  # not retried: a second attempt would find its own replica and cannot tell it apart
)  # fmt: skip

SERVICE_STEPS: tuple[Step, ...] = (
    Step("deploy", "canary deploy (old revision pinned)", RolloutStep, None, cli_skip=AIRFLOW_ONLY),
    # a stepped canary (deploy.steps) shifts traffic within its analysis, step by step
    Step("shift_traffic", "traffic shift to the canary", RolloutStep, None, applies=_single_share,
         cli_skip=AIRFLOW_ONLY),
    Step("monitor", "canary analysis (at each traffic step, with deploy.steps)", CanaryOutcome, None,
         cli_skip=AIRFLOW_ONLY),
    Step("promote", "promote", RolloutStep, None, cli_skip=AIRFLOW_ONLY),
    Step("rollback", "rollback", RolloutStep, None, cli_skip=AIRFLOW_ONLY),
    Step("revert_indexes_after_rollback", "revert of this run's indexes after a rollback", RollbackReverts,
         _revert_after_rollback, after=("rollback",), changes_db=True, applies=_reverts_on_rollback,
         cli_skip=AIRFLOW_ONLY),
)  # fmt: skip


def scope_steps(scope: str) -> tuple[Step, ...]:
    """The declaration of a scope: "run", "target" or "service"."""
    return {"run": RUN_STEPS, "target": TARGET_STEPS, "service": SERVICE_STEPS}[scope]


def declared(steps: Sequence[Step], plan: Plan, spec: TargetSpec | None = None) -> list[Step]:
    """The steps of a scope this plan (and target) has, in order."""
    return [s for s in steps if s.applies(plan, spec)]


def step(scope: str, name: str) -> Step:
    return next(s for s in scope_steps(scope) if s.name == name)


def load(steps: Sequence[Step], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A scope's stored results (record or XCom form) as typed values, by step name (absent: None)."""
    return {s.name: s.load(stored.get(s.name)) for s in steps}


@dataclass
class ScopeRun:
    """What running one scope's steps produced: typed results and why the others did not run."""

    results: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def record(self, steps: Sequence[Step]) -> dict[str, Any]:
        """The run record's form (what ``dbopt.run_record.collect`` gathers from the DAG's tasks)."""
        return {s.name: s.dump(self.results.get(s.name)) for s in steps} | {"skipped": dict(self.skipped)}


def run_target(
    plan: Plan,
    spec: TargetSpec,
    target: Target,
    *,
    dry_run: bool,
    reports_dir: Path,
    bench_target: Target | None = None,
    progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
) -> ScopeRun:
    """Every step of one target in declared order, without Airflow (``dbopt apply``, tests).
    ``bench_target``: the same database as a read-only user, for the steps that replay queries;
    ``progress(title)``: a progress callback for each step that replays (a terminal bar)."""
    out = ScopeRun()
    for s in declared(TARGET_STEPS, plan, spec):
        bench = bench_target if s.replays else None
        ticks = progress(s.title) if progress and s.replays else None
        ctx = StepContext(plan, dry_run, out.results, spec=spec, target=target, bench_target=bench,
                          reports_dir=reports_dir, progress=ticks)  # fmt: skip
        try:
            if s.items is not None:
                out.results[s.name] = tuple(s.execute(dataclasses.replace(ctx, item=i)) for i in s.items(ctx))
            else:
                out.results[s.name] = s.execute(ctx)
        except Skip as why:
            out.skipped[s.name] = str(why)
    return out


def index_changes(steps: Sequence[Step], results: Mapping[str, Any]) -> Iterator[tuple[Step, IndexChange]]:
    """Every index change the database-changing steps report, in step order."""
    for s in steps:
        value = results.get(s.name)
        if not s.changes_db or value is None:
            continue
        for result in value if s.mapped else (value,):
            for change in result.changes():
                yield s, change
