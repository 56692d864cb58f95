"""Daily dbopt report, e-mailed at 17:00 team time (``$DBOPT_TEAM_TZ``, default Asia/Seoul).

One HTML e-mail through the SMTP connection ``smtp_conn_id`` (default ``smtp_default``) with the
day's runs of every plan, current health, scaling changes and week-over-week trends, charts inline.
Recipients: param ``to``, else ``$DBOPT_REPORT_TO`` (comma-separated), else every plan's
``report.recipients``. ``skip_when_empty``: when nothing was recorded in the window, log it and skip
the task instead of sending. The content comes from the history store (``$DBOPT_HISTORY_URL``).
Parsing this file reads nothing and connects to nothing.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

TEAM_TZ = os.environ.get("DBOPT_TEAM_TZ") or "Asia/Seoul"
REPORT_TO_ENV = "DBOPT_REPORT_TO"
SKIP_WHEN_EMPTY_ENV = "DBOPT_DAILY_SKIP_WHEN_EMPTY"

log = logging.getLogger(__name__)


def _env_list(name: str) -> list[str]:
    return [a.strip() for a in os.environ.get(name, "").split(",") if a.strip()]


@dag(
    dag_id="dbopt_daily_report",
    schedule=CronTriggerTimetable("0 17 * * *", timezone=TEAM_TZ),
    start_date=pendulum.datetime(2026, 1, 1, tz=TEAM_TZ),
    catchup=False,
    max_active_runs=1,
    tags=["dbopt", "report"],
    doc_md=__doc__,
    default_args={"owner": "dbopt", "retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "skip_when_empty": Param(
            os.environ.get(SKIP_WHEN_EMPTY_ENV, "true").lower() not in ("0", "false", "no"),
            type="boolean",
            description=f"Do not send when nothing new was recorded (default from ${SKIP_WHEN_EMPTY_ENV}).",
        ),
        "to": Param(
            _env_list(REPORT_TO_ENV),
            type="array",
            items={"type": "string"},
            description=f"Recipients (default ${REPORT_TO_ENV}; empty: every plan's report.recipients).",
        ),
        "smtp_conn_id": Param("smtp_default", type="string", description="Airflow SMTP connection."),
    },
)
def dbopt_daily_report() -> None:
    @task
    def send_daily_report() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from dbopt.history import HistoryStore
        from dbopt.hooks.mail import send_html_email
        from dbopt.plan import Plan, iter_plans
        from dbopt.report.daily import build_daily_report

        context = get_current_context()
        params = context["params"]
        # The scheduled 17:00 (not the wall clock), so a retry or a late start reports the same day.
        until = context["logical_date"] or context["dag_run"].run_after
        plans = [p for _, p in iter_plans() if isinstance(p, Plan)]
        with HistoryStore() as store:
            report = build_daily_report(store, until, tz=TEAM_TZ, plan_ids=[p.id for p in plans])
        log.info("%s", report.log_summary())
        if report.empty and params["skip_when_empty"]:
            raise AirflowSkipException(f"nothing recorded from {report.since} to {report.until}: not sending")
        to = params["to"] or sorted({r for p in plans for r in p.report.recipients})
        if not to:
            raise ValueError(f"no recipients: set the param 'to', ${REPORT_TO_ENV}, or report.recipients in a plan")
        send_html_email(report.email, to, conn_id=params["smtp_conn_id"])
        return {"subject": report.email.subject, "to": to, "images": len(report.email.images)}

    send_daily_report()


dbopt_daily_report()
