"""Build the weekly optimization DAG of one plan (Airflow layer over ``dbopt.pipeline``).

health_check → go_no_go ──NO-GO───────────────────────────────────────────────────┐
    └─GO→ per target (task group):                                              │
          extract → advise → [cloud_sql_backup] → backup → bench_before         │
          → to_build → create_index[mapped] → verify → bench_after → judge       │
          → keep_or_revert → revert_indexes | keep_indexes → done [→ drop_unused] │
    → canary_gate → per Cloud Run service (task group, only when the plan deploys): │
          deploy → shift_traffic → monitor → promote_or_rollback                 │
          → promote | rollback [→ revert_indexes_after_rollback]                 │
    → report (always runs) ←─────────────────────────────────────────────────────┘
failed_run_watcher fails the run when any task failed (the report itself always succeeds).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TaskGroup, TriggerRule, get_current_context, task

from dbopt import pipeline
from dbopt.history.leases import Holder
from dbopt.hooks.database import DbTargetHook
from dbopt.notify import failure_notifier
from dbopt.plan import Plan, PlanError, RunPolicy, ServiceRef, TargetSpec
from dbopt.run_record import canary_group_id, step_recorder
from dbopt.runlock import hold_target, release_run
from dbopt.targets.base import IndexSpec, Target

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
    hook = DbTargetHook(conn_id)
    try:
        yield hook.target
    finally:
        hook.close()


def _run_holder() -> Holder:
    ctx = get_current_context()
    return Holder(_run_key(ctx), ctx["dag"].dag_id, "dag")


def _run_key(ctx: Any) -> str:
    return f"{ctx['dag'].dag_id}/{ctx['run_id']}"


def _fail_on_problem(result: dict[str, Any]) -> dict[str, Any]:
    """A build that failed, was refused or left something behind fails its task (no retry), its
    result recorded first: the run then ends failed with the reason."""
    problems = pipeline.run_problems([result], [], {})
    if problems:
        from airflow.exceptions import AirflowFailException

        get_current_context()["ti"].xcom_push(key="return_value", value=result)
        raise AirflowFailException("; ".join(problems))
    return result


def prometheus_source(conn_id: str, scopes: dict[str, dict[str, str]], window_s: float) -> Any:
    """A Prometheus source from an Airflow HTTP connection (host, port, schema http/https)."""
    from airflow.sdk import BaseHook

    from dbopt.metrics.sources import PrometheusSource

    conn = BaseHook.get_connection(conn_id)
    scheme = conn.schema or "http"
    # about 240 points per window: a 24 h gate does not need 15 s resolution
    return PrometheusSource(f"{scheme}://{conn.host}:{conn.port or 9090}", scopes, step_s=max(15.0, window_s / 240))


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
    return (
        f"# {plan.id}\n\n{plan.description}\n\n**Plan file:** `{source}`  \n**Targets:** {targets}  \n"
        f"**Deploy:** {'Cloud Run canary ' + str(plan.deploy.canary_percent) + '%' if plan.deploy.enabled else 'off'}"
        "\n\nTrigger with *dry run* to see what would change without changing anything."
    )


def _target_group(plan: Plan, spec: TargetSpec, reports_dir: Path) -> tuple[Any, Any]:
    """One target's chain, as a task group; returns the group and its last task."""
    group = spec.name

    with TaskGroup(group_id=group) as tg:

        @task
        def backup(advice: dict[str, Any]) -> dict[str, Any]:
            p, dry = _context_plan(plan)
            if dry:
                return {"kind": "none", "detail": "dry run: no backup taken", "verified": False}
            specs = [IndexSpec.from_dict(s) for s in advice["create"]]
            tables = pipeline.backup_tables(p, advice, spec.tables)
            with opened_target(spec.conn_id) as target:
                return target.backup(tables, reports_dir / "backups" / plan.id, undo=specs).to_dict()

        @task
        def extract() -> list[dict[str, Any]]:
            p, _ = _context_plan(plan)
            with opened_target(spec.conn_id) as target:
                return pipeline.extract_workload(p, target)

        @task(multiple_outputs=True)
        def advise(workload: list[dict[str, Any]]) -> dict[str, Any]:
            p, _ = _context_plan(plan)
            with opened_target(spec.conn_id) as target:
                queries = pipeline.bench_queries(p, workload, target.dialect)
                advice = pipeline.hold_unmeasurable(pipeline.advise(p, target, workload), queries)
                return advice | {"queries": queries}

        @task(show_return_value_in_logs=False)  # raw samples: the report shows them
        def benchmark(queries: list[dict[str, Any]], _after: dict[str, Any] | None = None) -> dict[str, Any]:
            """Real latencies of the benchmark queries (``_after``: the verification, whose build results
            let bench_after hide the new indexes for an interleaved before arm)."""
            from dbopt.tasklog import Counter, Ticker

            p, _ = _context_plan(plan)
            built = _after["created"] if _after else None
            runs = Counter("benchmark")
            with (
                opened_target(spec.conn_id) as owner,
                _replay_target(spec.bench_conn_id, owner) as target,
                Ticker(runs.status, LOG.info),
            ):
                return pipeline.benchmark(p, target, queries, built=built, owner=owner, progress=runs.update)

        @task
        def to_build(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """The specs as a task's own return value: dynamic mapping cannot expand a custom XCom key."""
            return specs

        @task(retries=2, retry_delay=pendulum.duration(seconds=5))
        def create_index(spec_: dict[str, Any]) -> dict[str, Any]:
            from dbopt.tasklog import Ticker, index_build_probe

            p, dry = _context_plan(plan)
            url = DbTargetHook(spec.conn_id).url.render_as_string(hide_password=False)
            with opened_target(spec.conn_id) as target, Ticker(index_build_probe(url), LOG.info):
                return _fail_on_problem(pipeline.create_index(p, target, spec_, dry))

        # after failed builds too: the indexes the other builds made are still judged (and reverted)
        @task(trigger_rule=TriggerRule.ALL_DONE)
        def verify(created: list[dict[str, Any]] | None, queries: list[dict[str, Any]] | None) -> dict[str, Any]:
            if queries is None:  # advise did not run (NO-GO, or an earlier step failed)
                from airflow.exceptions import AirflowSkipException

                raise AirflowSkipException("nothing to verify: the advice step did not run")
            with opened_target(spec.conn_id) as target:
                specs = [{"name": c["index"]} for c in (created or [])]
                return pipeline.verify_plans(target, specs, queries) | {"created": list(created or [])}

        @task(show_return_value_in_logs=False)  # the evidence is in XCom and the report; the log gets one line each
        def judge(verification: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
            from dbopt.tasklog import decision_lines

            p, _ = _context_plan(plan)
            decision = pipeline.keep_or_revert(p, verification["created"], verification, before, after)
            for line in decision_lines(decision):
                LOG.info(line)
            return decision

        @task.branch
        def keep_or_revert(decision: dict[str, Any]) -> str:
            return f"{group}.revert_indexes" if decision["revert"] else f"{group}.keep_indexes"

        @task
        def revert_indexes(advice_preexisting: list[str], decision: dict[str, Any]) -> list[dict[str, Any]]:
            p, dry = _context_plan(plan)
            with opened_target(spec.conn_id) as target:
                return pipeline.revert_indexes(p, target, {"preexisting": advice_preexisting}, decision, dry)

        keep = EmptyOperator(task_id="keep_indexes")
        done = EmptyOperator(task_id="done", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)

        workload = extract()
        advice = advise(workload)
        saved = backup(advice)
        if spec.cloud_sql is not None:
            from dbopt.operators.cloudsql import CloudSQLBackupOperator

            # the managed instance's own backup first, then the DDL dump and undo script
            cloud_backup = CloudSQLBackupOperator(
                task_id="cloud_sql_backup", instance=spec.cloud_sql.instance, project=spec.cloud_sql.project,
                gcp_conn_id=spec.cloud_sql.conn_id, description=f"dbopt {plan.id} {{{{ run_id }}}}",
            )  # fmt: skip
            advice >> cloud_backup >> saved
        before = benchmark.override(task_id="bench_before")(advice["queries"])
        saved >> before
        created = create_index.expand(spec_=to_build(advice["create"]))
        before >> created
        verification = verify(created, advice["queries"])
        after = benchmark.override(task_id="bench_after", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(
            advice["queries"], verification
        )
        decision = judge(verification, before, after)
        branch = keep_or_revert(decision)
        branch >> [revert_indexes(advice["preexisting"], decision), keep] >> done
        if plan.indexes.allow_drops:
            # after keep/revert, so the new indexes' verdicts are not confounded by the drops
            @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
            def drop_unused(advice_: dict[str, Any]) -> list[dict[str, Any]]:
                p, dry = _context_plan(plan)
                with opened_target(spec.conn_id) as target:
                    return pipeline.drop_unused(p, target, advice_, dry)

            dropped = drop_unused(advice)
            done >> dropped
            return tg, dropped
    return tg, done


def _canary_group(plan: Plan, service: ServiceRef) -> tuple[Any, Any]:
    """deploy (old revision pinned) → N% canary → analysis → promote | rollback, for one service."""
    from dbopt.operators.cloudrun import (
        CloudRunDeployRevisionOperator,
        CloudRunPromoteOperator,
        CloudRunRollbackOperator,
        CloudRunShiftTrafficOperator,
    )
    from dbopt.sensors.canary import CanaryAnalysisSensor

    d, m = plan.deploy, plan.monitor
    group = canary_group_id(service.name, service.region)
    gcp = {"gcp_conn_id": d.conn_id, "project": d.project}
    with TaskGroup(group_id=group) as tg:
        deploy = CloudRunDeployRevisionOperator(
            task_id="deploy", service=service.name, region=service.region, env=d.env, **gcp
        )
        shift = CloudRunShiftTrafficOperator(
            task_id="shift_traffic", deployment=deploy.output, percent=d.canary_percent, **gcp
        )
        revision = f"ti.xcom_pull(task_ids='{group}.deploy')"
        # the database source's URL is resolved from the connection when the sensor runs
        sources: dict[str, Any] = {
            "database": {"kind": "database", "long_transaction_s": plan.health_gate.long_transaction_s}
        }
        if m.metrics_source == "cloud_monitoring":
            sources["metrics"] = {
                "kind": "cloud_monitoring",
                "project": d.project,
                "service": service.name,
                "scopes": {
                    "canary": f"{{{{ {revision}['new_revision'] }}}}",
                    "baseline": f"{{{{ {revision}['previous_revision'] }}}}",
                    "service": None,
                },
                **({"endpoint": m.monitoring_endpoint} if m.monitoring_endpoint else {}),
            }
        elif m.metrics_conn_id:
            c = f"conn['{m.metrics_conn_id}']"
            sources["metrics"] = {
                "kind": "prometheus",
                "url": f"{{{{ {c}.schema or 'http' }}}}://{{{{ {c}.host }}}}:{{{{ {c}.port or 9090 }}}}",
                "scopes": {
                    "canary": {"revision": f"{{{{ {revision}['new_revision'] }}}}"},
                    "baseline": {"revision": f"{{{{ {revision}['previous_revision'] }}}}"},
                    "service": {"service": service.name},
                },
                "step_s": m.interval_s,
            }
        monitor = CanaryAnalysisSensor(
            task_id="monitor",
            plan=m.analysis_plan(),
            sources=sources,
            database_conn_id=plan.targets[0].conn_id,
            deferrable=m.mode == "deferrable",  # the triggerer waits out the analysis (up to duration_s)
            mode="poke",  # only when not deferred (plan: monitor.mode: poke)
        )

        @task.branch
        def promote_or_rollback(outcome: dict[str, Any]) -> str:
            return f"{group}.promote" if outcome["decision"] == "promote" else f"{group}.rollback"

        promote = CloudRunPromoteOperator(task_id="promote", deployment=deploy.output, **gcp)
        # Rollback runs when chosen, and also when the canary machinery failed after a deploy (the old
        # revision is the safe state). It is deploy's teardown: a deploy that did not succeed (an earlier
        # failure, a skip) means no rollback; a branch to promote skips it directly.
        rollback = CloudRunRollbackOperator(task_id="rollback", deployment=deploy.output, **gcp).as_teardown(
            setups=deploy, on_failure_fail_dagrun=True
        )
        decided = promote_or_rollback(monitor.output)
        deploy >> shift >> monitor >> decided >> [promote, rollback]
        [shift, monitor] >> rollback
        ends = [promote, rollback]
        if m.revert_indexes_on_rollback:

            @task
            def revert_indexes_after_rollback() -> dict[str, list[dict[str, Any]]]:
                """The rollback undoes this run's index changes as well (plan: monitor.revert_indexes_on_rollback)."""
                ti = get_current_context()["ti"]
                reverted = {}
                for t in plan.targets:
                    decision = ti.xcom_pull(task_ids=f"{t.name}.judge")
                    preexisting = ti.xcom_pull(task_ids=f"{t.name}.advise", key="preexisting")
                    if not decision:
                        continue
                    with opened_target(t.conn_id) as target:
                        advice = {"preexisting": preexisting or []}
                        reverted[t.name] = pipeline.revert_kept(plan, target, advice, decision)
                return reverted

            reverted = revert_indexes_after_rollback()
            rollback >> reverted
            ends.append(reverted)
    return tg, tuple(ends)


def build_dag(plan: Plan, source: Path, reports_dir: Path) -> DAG:
    """The weekly DAG of a valid plan."""
    with DAG(
        dag_id=plan.dag_id,
        description=_description(plan),
        schedule=plan.schedule.cron,
        start_date=START.in_timezone(plan.schedule.timezone),
        catchup=False,
        max_active_runs=1,  # two runs on one database would judge each other's indexes
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

        @task
        def health_check() -> dict[str, Any]:
            from dbopt.guardrails import window_gate
            from dbopt.metrics.health_gate import health_gate
            from dbopt.metrics.sources import DatabaseSource

            p, _ = _context_plan(plan)
            ctx = get_current_context()
            moments = {"logical time": ctx.get("logical_date"), "start": ctx["dag_run"].start_date}
            if (outside := window_gate(p, moments)) is not None:
                print(f"NO-GO: {outside['reason']}")
                return outside
            rules = pipeline.gate_rules(p.health_gate)
            results = {}
            for spec in p.targets:
                with opened_target(spec.conn_id, p.run) as target:
                    pipeline.check_access(target, spec.tables)
                    sources = {
                        "database": DatabaseSource(target=target, long_transaction_s=p.health_gate.long_transaction_s)
                    }
                    if p.health_gate.metrics_conn_id:
                        sources["metrics"] = prometheus_source(
                            p.health_gate.metrics_conn_id, {"service": {}}, p.health_gate.window_s
                        )
                    if rules:
                        results[spec.name] = health_gate(rules, sources).to_dict()
            if not rules:
                return {"decision": "GO", "reason": "the plan sets no health thresholds", "targets": {}}
            return pipeline.gate_decision(p.health_gate, results)

        @task.branch
        def go_no_go(gate: dict[str, Any]) -> list[str]:
            if gate["decision"] == "GO":
                return [f"{t.name}.extract" for t in plan.targets]
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

        gate = health_check()
        branch = go_no_go(gate)
        final = report()
        branch >> final
        dones = []
        for spec in plan.targets:
            tg, done = _target_group(plan, spec, reports_dir)
            branch >> tg
            done >> final
            dones.append(done)
        if plan.deploy.enabled:

            @task.branch(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
            def canary_gate() -> list[str]:
                params = get_current_context()["params"]
                if params.get("skip_deploy") or params.get("dry_run"):
                    return ["report"]
                return [f"{g}.deploy" for g in canary_groups]

            gate_task = canary_gate()
            dones >> gate_task >> final
            canary_groups = []
            for service in plan.deploy.services:
                cg, ends = _canary_group(plan, service)
                canary_groups.append(cg.group_id)
                gate_task >> cg
                list(ends) >> final
        # a setup (deploy) may only be followed by all_success tasks or its teardown; its failure still
        # reaches the watcher as its downstream's upstream_failed
        [t for t in dag.tasks if not t.is_setup] >> failed_run_watcher()
    return dag


def build_broken_dag(path: Path, error: PlanError) -> DAG:
    """A stand-in DAG for a plan that does not validate: the error is visible in the UI for that plan
    alone (its doc and its one failing task), and every other plan keeps working."""
    with DAG(
        dag_id=f"dbopt_{path.stem.lower()}",
        schedule=None,
        start_date=START,
        catchup=False,
        tags=["dbopt", "invalid-plan"],
        doc_md=f"# Invalid plan\n\n```\n{error}\n```\nFix the file and the DAG comes back on the next parse.",
    ) as dag:

        @task
        def plan_error() -> None:
            raise error

        plan_error()
    return dag
