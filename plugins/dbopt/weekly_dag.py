"""Build the weekly optimization DAG of one plan (Airflow layer over ``dbopt.steps``).

The tasks come from the step declaration: one task per declared step, in its scope's task group,
wired by the results each step reads (``needs``) and the steps it follows (``after``)::

    health_check → go_no_go ──NO-GO──────────────────────────────────────────────────┐
        └─GO→ per target (task group, TARGET_STEPS):                                │
              extract → advise → [cloud_sql_backup] → backup → bench_before         │
              → create_index[mapped over create_index_items] → verify → bench_after │
              → judge → revert_indexes → [drop_unused] → [cloud_sql_resize] → done  │
        → canary_gate → per Cloud Run service (task group, SERVICE_STEPS):          │
              deploy → shift_traffic → monitor → promote_or_rollback                │
              (deploy.steps: deploy → monitor, shifting at each step)               │
              → promote | rollback [→ revert_indexes_after_rollback]                │
        → [warm_cache, scaling_forecast] (RUN_STEPS after_rollout)                  │
        → report (always runs) ←────────────────────────────────────────────────────┘

A step that raises ``steps.Skip`` ends skipped, its reason kept for the record; ``done`` closes a
target's group when nothing failed. failed_run_watcher fails the run when any task failed (the report
itself always succeeds). Built with ``auto_register=False``: the DAG file publishes a DAG only once it
is built whole.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TaskGroup, TriggerRule, XComArg, get_current_context, task

from dbopt import pipeline, steps
from dbopt.history.leases import Holder
from dbopt.hooks.database import DbTargetHook
from dbopt.notify import failure_notifier
from dbopt.plan import CloudSqlInstance, Plan, PlanError, RunPolicy, ServiceRef, TargetSpec
from dbopt.results import Gate
from dbopt.run_record import SKIPPED_KEY, canary_group_id, step_recorder
from dbopt.runlock import hold_target, release_run
from dbopt.targets.base import Target

START = pendulum.datetime(2026, 1, 1, tz="UTC")
LOG = logging.getLogger("dbopt")
OVERRIDABLE = {  # trigger-form field → (plan section, the form's title)
    "p95_ms_max": ("health_gate", "Health gate: p95 latency limit (ms)"),
    "error_rate_max_pct": ("health_gate", "Health gate: error-rate limit (%)"),
    "cache_hit_ratio_min": ("health_gate", "Health gate: minimum cache hit ratio (0..1)"),
    "replication_lag_ms_max": ("health_gate", "Health gate: replication lag limit (ms)"),
    "long_transactions_max": ("health_gate", "Health gate: most long transactions allowed"),
    "storage_budget_mb": ("indexes", "Storage budget for new indexes (MB)"),
}


def effective_plan(plan: Plan, params: dict[str, Any]) -> Plan:
    """The plan with the trigger form's threshold overrides applied (None = keep the plan's value)."""
    updates: dict[str, dict[str, Any]] = {}
    for key, (section, _) in OVERRIDABLE.items():
        if params.get(key) is not None:
            updates.setdefault(section, {})[key] = params[key]
    if params.get("skip_deploy"):
        updates["deploy"] = {"enabled": False}
    if not updates:
        return plan
    return Plan.model_validate(plan.model_dump() | {s: getattr(plan, s).model_dump() | u for s, u in updates.items()})


def _params(plan: Plan) -> dict[str, Param]:
    params = {
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Compute and report everything, change nothing."),
        "skip_deploy": Param(False, type="boolean", title="Skip deploy",
                             description="No Cloud Run canary this run."),
    }  # fmt: skip
    for key, (section, title) in OVERRIDABLE.items():
        current = getattr(getattr(plan, section), key)
        empty = f"the plan's {current:g}" if current is not None else "not checked (the plan sets no limit)"
        params[key] = Param(None, type=["null", "number"], title=title,
                            description=f"Empty: {empty}. A number overrides it for this run.")  # fmt: skip
    return params


@contextmanager
def opened_target(conn_id: str, policy: RunPolicy | None = None) -> Iterator[Target]:
    """The target of a connection, connected and held for this DAG run during one task (see
    ``dbopt.runlock``: the run's lease lasts until its report task; ``policy`` says whether to wait
    for another run — the first task that takes the lease passes the plan's)."""
    hook = DbTargetHook(conn_id)
    try:
        with hold_target(hook.target, _run_holder(), policy or RunPolicy(), release_lease=False):
            yield hook.target
    finally:
        hook.close()


@contextmanager
def _replay_target(conn_id: str | None, owner: Target) -> Iterator[Target]:
    """The benchmark user's connection where the plan names one (the run lock is the owner's), else ``owner``."""
    if not conn_id:
        yield owner
        return
    with _database(conn_id) as target:
        yield target


@contextmanager
def _database(conn_id: str) -> Iterator[Target]:
    """A database by connection id, without the run's hold on it (a replica, the benchmark user)."""
    hook = DbTargetHook(conn_id)
    try:
        yield hook.target
    finally:
        hook.close()


@contextmanager
def _cloud_sql(instance: CloudSqlInstance) -> Iterator[Any]:
    from dbopt.hooks.cloudsql import CloudSQLHook

    yield CloudSQLHook(instance.conn_id, project=instance.project).client


def _redis_url(conn_id: str) -> str:
    from dbopt.hooks.redis import RedisHook

    return RedisHook(conn_id).url


def _run_holder() -> Holder:
    ctx = get_current_context()
    return Holder(_run_key(ctx), ctx["dag"].dag_id, "dag")


def _run_key(ctx: Any) -> str:
    return f"{ctx['dag'].dag_id}/{ctx['run_id']}"


def _fail_on_problem(result: Any) -> dict[str, Any]:
    """A change that failed, was refused or left something behind fails its task (no retry), its
    result recorded first: the run then ends failed with the reason."""
    return _fail_with(result, pipeline.run_problems(result.changes()))


def _fail_with(result: Any, problems: list[str]) -> dict[str, Any]:
    """``result`` as the task's return value; with problems, recorded first and the task failed (no retry)."""
    if problems:
        from airflow.sdk.exceptions import AirflowFailException

        get_current_context()["ti"].xcom_push(key="return_value", value=result.to_dict())
        raise AirflowFailException("; ".join(problems))
    return result.to_dict()


def http_url(conn_id: str) -> str:
    """The base URL of a Prometheus (HTTP) connection: schema http/https, host, port (default 9090)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return f"{conn.schema or 'http'}://{conn.host}:{conn.port or 9090}"


def prometheus_source(conn_id: str, scopes: dict[str, dict[str, str]], window_s: float) -> Any:
    """A Prometheus source from an Airflow HTTP connection (host, port, schema http/https)."""
    from dbopt.metrics.sources import PrometheusSource

    # about 240 points per window: a 24 h gate does not need 15 s resolution
    return PrometheusSource(http_url(conn_id), scopes, step_s=max(15.0, window_s / 240))


CLIENTS = steps.Clients(database=_database, cloud_sql=_cloud_sql, redis_url=_redis_url, http_url=http_url)


def _context_plan(plan: Plan) -> tuple[Plan, bool]:
    params = get_current_context()["params"]
    return effective_plan(plan, params), bool(params.get("dry_run"))


def _description(plan: Plan) -> str:
    """The plan's first line, with the schedule's time zone: Airflow 3.3's API reports every DAG's
    timezone as the server default, and the UI shows only the cron string."""
    first = plan.description.strip().splitlines()[0] if plan.description.strip() else plan.id
    when = f"{plan.schedule.cron} ({plan.schedule.timezone})" if plan.schedule.cron else "manual runs only"
    return f"{first} — {when}"


def _doc(plan: Plan, source: Path) -> str:
    targets = ", ".join(f"`{t.name}` ({t.dialect}, connection `{t.conn_id}`)" for t in plan.targets)
    shares = " → ".join(f"{p}%" for p in plan.deploy.steps or [plan.deploy.canary_percent])
    return (
        f"# {plan.id}\n\n{plan.description}\n\n**Plan file:** `{source}`  \n**Targets:** {targets}  \n"
        f"**Deploy:** {'Cloud Run canary ' + shares if plan.deploy.enabled else 'off'}"
        "\n\nTrigger with *dry run* to see what would change without changing anything."
    )


def _step_task(plan: Plan, scope: str, spec: TargetSpec | None, step: steps.Step, reports_dir: Path) -> Any:
    """One declared step as a TaskFlow task: earlier results in (``inputs``, by step name), the
    step's typed result out as a dict. A ``Skip`` becomes a skipped task whose reason the record keeps."""
    if step.after_failures:  # ends skipped (with the reason) when an input did not come
        rule = TriggerRule.ALL_DONE
    elif step.needs or step.after or step.after_rollout:
        rule = TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
    else:
        rule = TriggerRule.ALL_SUCCESS
    options: dict[str, Any] = {"task_id": step.name, "trigger_rule": rule, "show_return_value_in_logs": not step.quiet}
    if step.retries is not None:
        options |= {"retries": step.retries, "retry_delay": pendulum.duration(seconds=5)}

    @task(**options)
    def run(inputs: dict[str, Any], item: dict[str, Any] | None = None) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        p, dry = _context_plan(plan)
        results = {n: steps.step(scope, n).load(_stored(steps.step(scope, n), v)) for n, v in inputs.items()}
        ctx = steps.StepContext(
            p,
            dry,
            results,
            spec=spec,
            reports_dir=reports_dir,
            # the gate is the run's first hold on its databases: it waits (or not) as the plan says
            open_target=lambda t: opened_target(t.conn_id, p.run if scope == "run" else None),
            item=None if item is None or step.item_type is None else step.item_type.from_dict(item),
            clients=CLIENTS,
        )
        if scope == "run":
            airflow = get_current_context()
            moments = {"logical time": airflow.get("logical_date"), "start": airflow["dag_run"].start_date}
            ctx = dataclasses.replace(ctx, moments=moments)
        if scope == "run" and p.health_gate.metrics_conn_id:
            conn_id, window = p.health_gate.metrics_conn_id, p.health_gate.window_s
            ctx = dataclasses.replace(ctx, metrics=lambda: prometheus_source(conn_id, {"service": {}}, window))
        if scope == "service":
            ctx = dataclasses.replace(ctx, targets=_all_target_results(p))
        if step.after_failures and (missing := [n for n in step.needs if results[n] is None]):
            reason = f"nothing to do: {', '.join(missing)} did not run"
            get_current_context()["ti"].xcom_push(key=SKIPPED_KEY, value=reason)
            raise AirflowSkipException(reason)
        try:
            if spec is None:
                return _checked(step, step.execute(ctx))
            # a replay of the application's queries runs as the benchmark user where the plan names one
            bench_conn_id = spec.bench_conn_id if step.replays else None
            watching, progress = _watch(step, spec)
            with opened_target(spec.conn_id) as target, _replay_target(bench_conn_id, target) as bench, watching:
                ctx = dataclasses.replace(ctx, target=target, bench_target=bench, progress=progress)
                return _checked(step, step.execute(ctx))
        except steps.Skip as why:
            get_current_context()["ti"].xcom_push(key=SKIPPED_KEY, value=str(why))
            raise AirflowSkipException(str(why)) from None

    return run


def _watch(step: steps.Step, spec: TargetSpec) -> tuple[AbstractContextManager[Any], Any]:
    """What the task log shows while the step runs (a line every few seconds), and the progress
    callback that feeds it."""
    from dbopt.tasklog import Counter, Ticker, index_build_probe

    if step.watch == "runs":
        runs = Counter(step.name)
        return Ticker(runs.status, LOG.info), runs.update
    if step.watch == "index_build":
        url = DbTargetHook(spec.conn_id).url.render_as_string(hide_password=False)
        return Ticker(index_build_probe(url), LOG.info), None
    return nullcontext(), None


def _checked(step: steps.Step, result: Any) -> dict[str, Any]:
    for line in getattr(result, "log_lines", list)():
        LOG.info(line)
    if step.changes_db:
        return _fail_on_problem(result)
    return _fail_with(result, getattr(result, "problems", list)())


def _stored(step: steps.Step, value: Any) -> Any:
    """A mapped step that ran for no item (or was skipped) has no results: an empty tuple, not None."""
    return list(value or []) if step.mapped else value


def _all_target_results(plan: Plan) -> dict[str, dict[str, Any]]:
    """Every target's results (for a service step such as the revert after a rollback)."""
    ti = get_current_context()["ti"]
    out = {}
    for spec in plan.targets:
        wanted = steps.declared(steps.TARGET_STEPS, plan, spec)
        pulled = {s.name: ti.xcom_pull(task_ids=[f"{spec.name}.{s.name}"]) for s in wanted if not s.mapped}
        out[spec.name] = {s.name: s.load(next((v for v in pulled[s.name] if v is not None), None))
                          for s in wanted if not s.mapped}  # fmt: skip
    return out


def _target_group(plan: Plan, spec: TargetSpec, reports_dir: Path) -> tuple[Any, Any]:
    """One target's chain, as a task group built from ``steps.TARGET_STEPS``; returns the group and
    its last task."""
    outputs: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    with TaskGroup(group_id=spec.name) as tg:
        for step in steps.declared(steps.TARGET_STEPS, plan, spec):
            inputs = {n: outputs[n] for n in step.needs}
            if step.run is None:
                task_ = OPERATOR_STEPS[step.name](plan, spec)
            elif step.items is not None:
                items = _items_task(plan, spec, step)(inputs)
                task_ = _step_task(plan, "target", spec, step, reports_dir).partial(inputs=inputs).expand(item=items)
            else:
                task_ = _step_task(plan, "target", spec, step, reports_dir)(inputs)
            for name in (*step.needs, *step.after):
                if name in tasks:
                    tasks[name] >> task_
            outputs[step.name] = task_ if isinstance(task_, XComArg) else task_.output
            tasks[step.name] = task_
        # the group's end: done when nothing failed (a skipped revert, say, is a normal end)
        done = EmptyOperator(task_id="done", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        list(tasks.values()) >> done
    return tg, done


def _items_task(plan: Plan, spec: TargetSpec, step: steps.Step) -> Any:
    """The items of a mapped step as a task's own return value (dynamic mapping expands only that)."""

    @task(task_id=f"{step.name}_items")
    def items(inputs: dict[str, Any]) -> list[dict[str, Any]]:
        p, dry = _context_plan(plan)
        results = {n: steps.step("target", n).load(v) for n, v in inputs.items()}
        assert step.items is not None
        return [i.to_dict() for i in step.items(steps.StepContext(p, dry, results, spec=spec))]

    return items


def _cloud_sql_backup(plan: Plan, spec: TargetSpec) -> Any:
    """The managed instance's own backup first, then the DDL dump and undo script."""
    from dbopt.operators.cloudsql import CloudSQLBackupOperator

    assert spec.cloud_sql is not None
    return CloudSQLBackupOperator(
        task_id="cloud_sql_backup", instance=spec.cloud_sql.instance, project=spec.cloud_sql.project,
        gcp_conn_id=spec.cloud_sql.conn_id, description=f"dbopt {plan.id} {{{{ run_id }}}}",
    )  # fmt: skip


# Target steps that are Airflow operators (``run`` None in the declaration): how to build each.
OPERATOR_STEPS = {"cloud_sql_backup": _cloud_sql_backup}


def _redis_source(plan: Plan) -> dict[str, Any]:
    """The cache's Redis as the canary's "redis" source, when a rule reads it (``source: redis``); its
    URL comes from the connection where the analysis runs (``triggers.canary.resolve_sources``)."""
    m = plan.monitor
    if plan.cache is None or not any(r.source == "redis" for r in m.rules):
        return {}
    return {"redis": {"kind": "redis", "redis_conn_id": plan.cache.redis_conn_id, "probe_s": min(5.0, m.interval_s)}}


def _canary_group(plan: Plan, service: ServiceRef, reports_dir: Path, groups: list[str]) -> Any:
    """deploy (old revision pinned) → N% canary → analysis → promote | rollback, for one service; with
    deploy.steps the analysis runs at each traffic step in turn. ``groups``: every service's canary group
    (deploy.on_region_failure rollback_all: a region promotes only when all of them passed)."""
    from dbopt.operators.cloudrun import (
        CloudRunDeployRevisionOperator,
        CloudRunPromoteOperator,
        CloudRunRollbackOperator,
        CloudRunShiftTrafficOperator,
        CloudRunSteppedCanaryOperator,
    )
    from dbopt.sensors.canary import CanaryAnalysisSensor

    d, m = plan.deploy, plan.monitor
    group = canary_group_id(service.name, service.region)
    database = next(t for t in plan.targets if t.name == plan.service_target(service))
    gcp = {"gcp_conn_id": d.conn_id, "project": d.project}
    with TaskGroup(group_id=group) as tg:
        deploy = CloudRunDeployRevisionOperator(
            task_id="deploy", service=service.name, region=service.region, env=d.env, **gcp
        )
        sources = _canary_sources(plan, service, f"ti.xcom_pull(task_ids='{group}.deploy')") | _redis_source(plan)
        analysis = {"plan": m.analysis_plan(), "sources": sources, "database_conn_id": database.conn_id}
        built: dict[str, Any] = {"deploy": deploy}
        if d.steps:  # shifts and analyses step by step in one task, deferred between the shifts
            monitor = CloudRunSteppedCanaryOperator(
                task_id="monitor",
                deployment=deploy.output,
                steps=list(d.steps),
                deferrable=m.mode == "deferrable",
                **analysis,
                **gcp,
            )
            deploy >> monitor
        else:
            shift = CloudRunShiftTrafficOperator(
                task_id="shift_traffic", deployment=deploy.output, percent=d.canary_percent, **gcp
            )
            monitor = CanaryAnalysisSensor(
                task_id="monitor",
                **analysis,
                deferrable=m.mode == "deferrable",  # the triggerer waits out the analysis (up to duration_s)
                mode="poke",  # only when not deferred (plan: monitor.mode: poke)
            )
            deploy >> shift >> monitor
            built["shift_traffic"] = shift

        @task.branch
        def promote_or_rollback(outcome: dict[str, Any]) -> str:
            if outcome["decision"] != "promote":
                return f"{group}.rollback"
            if d.on_region_failure == "rollback_all":
                ti = get_current_context()["ti"]
                others = {g: ti.xcom_pull(task_ids=f"{g}.monitor") for g in groups if g != group}
                if failed := [g for g, o in others.items() if not o or o.get("decision") != "promote"]:
                    LOG.info("rolling back although this canary passed: %s did not (rollback_all)", failed)
                    return f"{group}.rollback"
            return f"{group}.promote"

        promote = CloudRunPromoteOperator(task_id="promote", deployment=deploy.output, **gcp)
        # Rollback runs when chosen, and also when the canary machinery failed after a deploy (the old
        # revision is the safe state). It is deploy's teardown: a deploy that did not succeed (an earlier
        # failure, a skip) means no rollback; a branch to promote skips it directly.
        rollback = CloudRunRollbackOperator(task_id="rollback", deployment=deploy.output, **gcp).as_teardown(
            setups=deploy, on_failure_fail_dagrun=True
        )
        decided = promote_or_rollback(monitor.output)
        monitor >> decided >> [promote, rollback]
        [*(t for name, t in built.items() if name != "deploy"), monitor] >> rollback
        built |= {"monitor": monitor, "promote": promote, "rollback": rollback}
        for step in steps.declared(steps.SERVICE_STEPS, plan):
            if step.name not in built:  # a function step: built from the declaration
                built[step.name] = _step_task(plan, "service", None, step, reports_dir)({})
                for name in step.after:
                    built[name] >> built[step.name]
        missing = {s.name for s in steps.declared(steps.SERVICE_STEPS, plan)} ^ set(built)
        if missing:
            raise RuntimeError(f"canary steps declared but not built (or built but not declared): {sorted(missing)}")
    return tg


def _canary_sources(plan: Plan, service: ServiceRef, deployed: str) -> dict[str, Any]:
    """The canary analysis' metric sources (templated: ``deployed`` is the deploy XCom's Jinja expression)."""
    d, m = plan.deploy, plan.monitor
    # the database source's URL is resolved from the connection when the analysis runs
    sources: dict[str, Any] = {
        "database": {"kind": "database", "long_transaction_s": plan.health_gate.long_transaction_s}
    }
    if m.metrics_source == "cloud_monitoring":
        sources["metrics"] = {
            "kind": "cloud_monitoring",
            "project": d.project,
            "service": service.name,
            "location": service.region,  # revisions of this region only: the others are other canaries
            "gcp_conn_id": d.conn_id,  # its credentials, resolved where the analysis runs
            "scopes": {
                "canary": f"{{{{ {deployed}['new_revision'] }}}}",
                "baseline": f"{{{{ {deployed}['previous_revision'] }}}}",
                "service": None,
            },
            **({"endpoint": m.monitoring_endpoint} if m.monitoring_endpoint else {}),
        }
    elif m.metrics_conn_id:
        c = f"conn['{m.metrics_conn_id}']"
        # this service in this region only (as the demo service and Cloud Run label their series)
        here = {"service": service.name, "location": service.region}
        sources["metrics"] = {
            "kind": "prometheus",
            "url": f"{{{{ {c}.schema or 'http' }}}}://{{{{ {c}.host }}}}:{{{{ {c}.port or 9090 }}}}",
            "scopes": {
                "canary": {**here, "revision": f"{{{{ {deployed}['new_revision'] }}}}"},
                "baseline": {**here, "revision": f"{{{{ {deployed}['previous_revision'] }}}}"},
                "service": here,
            },
            "step_s": m.interval_s,
        }
    return sources


def build_dag(plan: Plan, source: Path, reports_dir: Path) -> DAG:
    """The weekly DAG of a valid plan."""
    with DAG(
        dag_id=plan.dag_id,
        description=_description(plan),
        schedule=plan.schedule.cron,
        start_date=START.in_timezone(plan.schedule.timezone),
        catchup=False,
        max_active_runs=1,  # two runs on one database would judge each other's indexes
        auto_register=False,  # the DAG file publishes it once built whole (a half-built DAG must not appear)
        tags=["dbopt", *plan.tags, *sorted({t.dialect for t in plan.targets})],
        doc_md=_doc(plan, source),
        params=_params(plan),
        default_args={
            "owner": plan.owner,
            "retries": 1,
            "retry_delay": pendulum.duration(seconds=10),
            "on_success_callback": [step_recorder(plan.id, "success")],
            "on_retry_callback": [step_recorder(plan.id, "up_for_retry")],
            "on_failure_callback": [
                step_recorder(plan.id, "failed"),
                *filter(None, [failure_notifier(plan)]),
            ],
        },
    ) as dag:
        run_steps = steps.declared(steps.RUN_STEPS, plan)
        (gate_step,) = [s for s in run_steps if not s.after_rollout]
        first = [s.name for s in steps.declared(steps.TARGET_STEPS, plan) if not (s.needs or s.after)]

        @task.branch
        def go_no_go(gate: dict[str, Any]) -> list[str]:
            if Gate.from_dict(gate).decision == "GO":
                return [f"{t.name}.{name}" for t in plan.targets for name in first]
            return ["report"]

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def report() -> dict[str, Any]:
            from dbopt.run_record import collect_and_report

            ctx = get_current_context()
            try:
                return collect_and_report(plan, ctx, reports_dir)
            finally:
                release_run(_run_key(ctx))  # the run's hold on its databases ends with its report

        @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
        def failed_run_watcher() -> None:
            """The report always succeeds, so without this a run whose build failed would look green."""
            raise RuntimeError("a task of this run failed; see the report for what happened")

        gate = _step_task(plan, "run", None, gate_step, reports_dir)({})
        branch = go_no_go(gate)
        final = report()
        dones = []
        for spec in plan.targets:
            tg, done = _target_group(plan, spec, reports_dir)
            branch >> tg
            dones.append(done)
        canary_groups: list[str] = []
        if plan.deploy.enabled:

            @task.branch(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
            def canary_gate() -> list[str]:
                params = get_current_context()["params"]
                if params.get("skip_deploy") or params.get("dry_run"):
                    return ["report"]
                return [f"{g}.deploy" for g in canary_groups]

            gate_task = canary_gate()
            dones >> gate_task
            canary_groups = [canary_group_id(s.name, s.region) for s in plan.deploy.services]
            for service in plan.deploy.services:
                gate_task >> _canary_group(plan, service, reports_dir, canary_groups)
            if plan.deploy.on_region_failure == "rollback_all":  # each region decides once all have analysed
                for group in canary_groups:
                    for other in canary_groups:
                        if other != group:
                            dag.get_task(f"{other}.monitor") >> dag.get_task(f"{group}.promote_or_rollback")
        # after the rollout, whichever way each canary ended (a dry run or a skipped deploy: after the targets)
        ends = [*dones, *(dag.get_task(f"{g}.{end}") for g in canary_groups for end in ("promote", "rollback"))]
        for step in run_steps:
            if step.after_rollout:
                ends >> _step_task(plan, "run", None, step, reports_dir)({}).operator
        # the report comes last, after every task of the run (a branch may also skip straight to it);
        # a setup (deploy) may only be followed by all_success tasks or its teardown: its failure still
        # reaches the report and the watcher as its downstream's upstream_failed
        [t for t in dag.tasks if t is not final.operator and not t.is_setup] >> final.operator
        [t for t in dag.tasks if not t.is_setup] >> failed_run_watcher()
    return dag


def build_broken_dag(path: Path, error: Exception) -> DAG:
    """A stand-in DAG for a plan that does not validate or whose DAG could not be built: the error is
    visible in the UI for that plan alone (its doc and its one failing task), and every other plan
    keeps working."""
    if not isinstance(error, PlanError):
        error = PlanError(path, [f"the DAG could not be built from this plan: {type(error).__name__}: {error}"])
    with DAG(
        dag_id=f"dbopt_{path.stem.lower()}",
        schedule=None,
        start_date=START,
        catchup=False,
        auto_register=False,
        tags=["dbopt", "invalid-plan"],
        doc_md=f"# Invalid plan\n\n```\n{error}\n```\nFix the file and the DAG comes back on the next parse.",
    ) as dag:

        @task
        def plan_error() -> None:
            raise error

        plan_error()
    return dag
