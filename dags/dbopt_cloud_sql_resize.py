"""Cloud SQL downsizing by replica: one DAG ``dbopt_cloud_sql_resize_<plan id>`` per plan with a
``targets[].cloud_sql.resize`` section (``dbopt.cloud.resize``), triggered by hand.

Param ``action``: ``resize`` (smaller replica → benchmark against the primary → promote only if it holds,
old primary kept as standby), ``cleanup`` (delete standbys whose ``standby_hours`` have passed, never
earlier), ``switch_back`` or ``tier`` (roll back). ``dry_run`` lists every step and changes nothing.
Every action first deletes expired standbys. Parsing this file reads the plan files and calls nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, get_parsing_context, task

from dbopt.plan import Plan, TargetSpec, iter_plans

PREFIX = "dbopt_cloud_sql_resize_"


def _for_target(plan: Plan, target: TargetSpec, action: str, dry_run: bool) -> dict[str, Any]:
    from dbopt.cloud.resize import (
        ReplicaBench,
        cleanup_standbys,
        plan_replica_bench,
        resize_by_replica,
        rollback,
        spec_from_plan,
    )
    from dbopt.hooks.cloudsql import CloudSQLHook
    from dbopt.hooks.database import DbTargetHook

    assert target.cloud_sql is not None and target.cloud_sql.resize is not None
    spec = spec_from_plan(target.cloud_sql)
    sql = CloudSQLHook(target.cloud_sql.conn_id, project=spec.project).client
    standbys = [a.to_dict() for a in cleanup_standbys(sql, dry_run=dry_run)]
    done: dict[str, Any] = {"target": target.name, "action": action, "standbys": standbys}
    if action in ("switch_back", "tier"):
        done["steps"] = [s.to_dict() for s in rollback(sql, spec, action, dry_run=dry_run)]  # type: ignore[arg-type]
    elif action == "resize":
        primary, replica = DbTargetHook(target.conn_id), DbTargetHook(target.cloud_sql.resize.replica_conn_id)

        def bench() -> ReplicaBench:  # opened only once the replica is ready
            return plan_replica_bench(plan, primary.target, replica.target)

        try:
            result = resize_by_replica(sql, spec, bench, dry_run=dry_run)
        finally:
            primary.close()
            replica.close()
        done["resize"] = result.to_dict()
        if result.decision == "failed":
            raise RuntimeError(f"{target.name}: {result.reason}")
    return done


def build_resize_dag(plan: Plan, path: Path) -> DAG:
    with DAG(
        dag_id=f"{PREFIX}{plan.id}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["dbopt", "cloud-sql", *plan.tags],
        doc_md=__doc__,
        params={
            "action": Param("resize", enum=["resize", "cleanup", "switch_back", "tier"], description="What to do."),
            "dry_run": Param(False, type="boolean", description="List the steps; change nothing."),
        },
    ) as dag:

        @task
        def carry_out() -> list[dict[str, Any]]:
            from dbopt.plan import load_plan

            params = get_current_context()["params"]
            current = load_plan(path)  # the plan as it is now
            return [
                _for_target(current, target, params["action"], params["dry_run"])
                for target in current.targets
                if target.cloud_sql is not None and target.cloud_sql.resize is not None
            ]

        carry_out()
    return dag


wanted = get_parsing_context().dag_id  # on a worker: build only that DAG, read only its plan
if not wanted or wanted.startswith(PREFIX):
    for plan_path, plan in iter_plans(only_id=wanted.removeprefix(PREFIX) if wanted else None):
        if isinstance(plan, Plan) and any(t.cloud_sql and t.cloud_sql.resize for t in plan.targets):
            build_resize_dag(plan, plan_path)
