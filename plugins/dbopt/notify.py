"""Failure e-mail for the weekly DAG: which task failed, on which try, why, and the link to its log.

``failure_notifier(plan)`` returns a callable for ``on_failure_callback`` (task level; DAG-level
notifier callbacks cannot be exercised under ``dag.test()``, apache/airflow#64649). Building the
message is plain data; only sending imports the Airflow SMTP layer (``dbopt.hooks.mail``).
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dbopt.plan import Plan
from dbopt.report.mail import HtmlEmail

ALERT_TO_ENV = "DBOPT_ALERT_TO"  # comma-separated fallback recipients for plans without report.recipients
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

log = logging.getLogger(__name__)


def failure_email(context: Mapping[str, Any]) -> HtmlEmail:
    """The message for a failed task, from an Airflow callback context (``ti``, ``exception``)."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    task = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}[{map_index}]"
    error = context.get("exception")
    error_text = f"{type(error).__name__}: {error}" if error is not None else "(no exception in the context)"
    rows = {
        "DAG": ti.dag_id,
        "run": ti.run_id,
        "task": task,
        "try": getattr(ti, "try_number", "?"),
        "error": error_text,
    }
    cells = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    link = html.escape(ti.log_url, quote=True)
    body = (
        f"<html><body><h2>dbopt: task {html.escape(task)} failed</h2><table>{cells}</table>"
        f'<p>Log: <a href="{link}">{link}</a></p>'
        "<p>The run's report (written by its always-running report task) says what was changed before the "
        "failure.</p></body></html>"
    )
    return HtmlEmail(f"[dbopt] {ti.dag_id}: {task} failed (try {rows['try']})", body)


class FailureEmail:
    """``on_failure_callback``: e-mails ``to`` through the SMTP connection ``smtp_conn_id``."""

    def __init__(self, to: Iterable[str], smtp_conn_id: str = "smtp_default", from_email: str | None = None):
        self.to = sorted(set(to))
        bad = [a for a in self.to if not EMAIL.fullmatch(a)]
        if bad or not self.to:
            raise ValueError(f"failure notifier: need e-mail addresses, got {bad or 'none'}")
        self.smtp_conn_id = smtp_conn_id
        self.from_email = from_email

    def __call__(self, context: Mapping[str, Any]) -> None:
        from dbopt.hooks.mail import send_html_email

        email = failure_email(context)
        send_html_email(email, self.to, conn_id=self.smtp_conn_id, from_email=self.from_email)
        log.info("failure e-mail %r sent to %s", email.subject, ", ".join(self.to))


def recipients(plan: Plan) -> list[str]:
    """The plan's report recipients, its owner if that is an address, else ``$DBOPT_ALERT_TO``."""
    found = [*plan.report.recipients, *([plan.owner] if EMAIL.fullmatch(plan.owner) else [])]
    if not found:
        found = [a.strip() for a in os.environ.get(ALERT_TO_ENV, "").split(",") if a.strip()]
    return sorted(set(found))


def failure_notifier(plan: Plan, smtp_conn_id: str = "smtp_default") -> FailureEmail | None:
    """The callback for the plan's tasks, or None (no callback) when nobody is to be told."""
    to = recipients(plan)
    if not to:
        log.warning("plan %s: no report.recipients and no $%s: failures are not e-mailed", plan.id, ALERT_TO_ENV)
        return None
    return FailureEmail(to, smtp_conn_id)
