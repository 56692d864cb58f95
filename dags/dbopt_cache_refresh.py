"""Cache refresh: one DAG ``dbopt_cache_refresh_<plan id>`` per plan with a ``cache:`` section.

On the section's ``refresh`` schedule (cron in its time zone) it runs the hot read-only statements
through the cache target's read path and writes their rows into Redis with the section's TTL
(``dbopt.cache.plan_run.warm_plan``), the hottest ``refresh.top_n`` only when set. ``dry_run`` lists the
keys without querying or writing. Parsing this file reads the plan files and calls nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, get_parsing_context, task
from airflow.timetables.trigger import CronTriggerTimetable

from dbopt.plan import Plan, iter_plans

PREFIX = "dbopt_cache_refresh_"


def build_cache_dag(plan: Plan, path: Path) -> DAG:
    from dbopt.cache.plan_run import cache_spec

    refresh = cache_spec(plan).refresh
    with DAG(
        dag_id=f"{PREFIX}{plan.id}",
        schedule=CronTriggerTimetable(refresh.cron, timezone=refresh.timezone) if refresh.cron else None,
        start_date=pendulum.datetime(2026, 1, 1, tz=refresh.timezone),
        catchup=False,
        max_active_runs=1,
        tags=["dbopt", "cache", *plan.tags],
        doc_md=__doc__,
        params={"dry_run": Param(False, type="boolean", description="List the keys; query and write nothing.")},
    ) as dag:

        @task(retries=2)  # safe to retry: SET with a TTL overwrites
        def warm_cache() -> dict[str, Any]:
            from dbopt.cache.plan_run import cache_spec, cache_target, warm_plan
            from dbopt.hooks.database import DbTargetHook
            from dbopt.hooks.redis import RedisHook
            from dbopt.plan import load_plan

            current = load_plan(path)  # the plan as it is now, not as it was at parse time
            spec = cache_spec(current)
            db, cache = DbTargetHook(cache_target(current).conn_id), RedisHook(spec.redis_conn_id)
            try:
                dry_run = get_current_context()["params"]["dry_run"]
                result = warm_plan(current, db.target, cache.client, top_n=spec.refresh.top_n, dry_run=dry_run)
            finally:
                db.close()
                cache.close()
            if result.skipped and not result.items:
                raise RuntimeError(f"nothing warmed: {[s.to_dict() for s in result.skipped]}")
            return result.to_dict()

        warm_cache()
    return dag


wanted = get_parsing_context().dag_id  # on a worker: build only that DAG, read only its plan
if not wanted or wanted.startswith(PREFIX):
    for plan_path, plan in iter_plans(only_id=wanted.removeprefix(PREFIX) if wanted else None):
        if isinstance(plan, Plan) and plan.cache is not None:  # invalid plans show up in dbopt_weekly.py
            build_cache_dag(plan, plan_path)
