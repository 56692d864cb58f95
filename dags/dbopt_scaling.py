"""Hourly predictive scaling of Cloud Run services (week 17, day 2, step 2.3).

Reads ``include/scaling/rules.yaml`` (param ``rules_file``), works out the min/max instances each
(service, region) should have at the run's logical time and changes only the services that differ,
through the connection ``gcp_conn_id``. ``dry_run`` logs the changes without applying them.
Rules with a ``forecast:`` read each service's hourly peak concurrency from Prometheus (``metrics_conn_id``)
and set min instances from it; without that history their fixed windows decide.
The task returns the list of changes. Parsing this file reads nothing and calls nothing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

RULES_FILE = Path(__file__).resolve().parents[1] / "include" / "scaling" / "rules.yaml"


@dag(
    dag_id="dbopt_scaling",
    schedule="0 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dbopt", "cloud-run", "scaling"],
    doc_md=__doc__,
    params={
        "dry_run": Param(False, type="boolean", description="Log the changes, apply nothing."),
        "rules_file": Param(str(RULES_FILE), type="string", description="Scaling rules YAML."),
        "gcp_conn_id": Param("google_cloud_run", type="string", description="Google Cloud connection."),
        "metrics_conn_id": Param("prometheus_default", type="string", description="Prometheus, for forecasts."),
    },
)
def dbopt_scaling() -> None:
    @task(retries=2, retry_delay=timedelta(minutes=1))  # safe to retry: unchanged services are skipped
    def apply_scaling_rules() -> list[dict[str, Any]]:
        from dbopt.cloud.scaling import apply_scaling, load_rules
        from dbopt.hooks.cloudrun import CloudRunHook

        context = get_current_context()
        params = context["params"]
        rules = load_rules(params["rules_file"])
        # The scheduled hour (not the wall clock), so a retry or a late start decides the same.
        now = context["logical_date"] or context["dag_run"].run_after
        from dbopt.history import HistoryStore

        traffic = None
        if any(rule.forecast for rule in rules.rules):
            from airflow.sdk import BaseHook

            from dbopt.cloud.forecast_history import fetch_history

            conn = BaseHook.get_connection(params["metrics_conn_id"])
            traffic = fetch_history(f"{conn.schema or 'http'}://{conn.host}:{conn.port or 9090}", rules,
                                    now.timestamp())  # fmt: skip
        run = CloudRunHook(params["gcp_conn_id"]).client
        changes = [c.to_dict() for c in apply_scaling(run, rules, now, dry_run=params["dry_run"], history=traffic)]
        if not params["dry_run"]:
            with HistoryStore() as history:  # the daily report's scaling section
                history.record_scaling(context["dag"].dag_id, context["run_id"], changes,
                                       try_number=context["ti"].try_number)  # fmt: skip
        return changes

    apply_scaling_rules()


dbopt_scaling()
