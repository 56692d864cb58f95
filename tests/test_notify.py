"""Failure e-mails through the real SMTP provider to a real SMTP server on loopback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dbopt.notify import FailureEmail, failure_notifier, recipients
from tests.mail_fixtures import Inbox, smtp_inbox
from tests.run_records import PLAN

__all__ = ["smtp_inbox"]  # the fixture, imported for pytest

LOG_URL = "http://localhost:8080/dags/dbopt_orders/runs/manual__1/tasks/shop.create_index/mapped/1?try_number=2"


def test_failure_email_names_task_try_error_and_log_link(smtp_inbox: Inbox):
    ti = SimpleNamespace(dag_id="dbopt_orders", run_id="manual__1", task_id="shop.create_index", map_index=1,
                         try_number=2, log_url=LOG_URL)  # fmt: skip
    notifier = failure_notifier(PLAN)
    assert isinstance(notifier, FailureEmail)

    notifier({"ti": ti, "exception": RuntimeError("lock timeout on <orders>")})

    (msg,) = smtp_inbox.messages
    assert msg["Subject"] == "[dbopt] dbopt_orders: shop.create_index[1] failed (try 2)"
    assert smtp_inbox.recipients == [["dba@example.com"]]
    body = msg.get_body(("html",)).get_content()
    assert f'href="{LOG_URL.replace("&", "&amp;")}"' in body
    assert "RuntimeError: lock timeout on &lt;orders&gt;" in body  # escaped, not markup


def test_recipients_fall_back_to_the_alert_address(monkeypatch):
    plan = PLAN.model_copy(
        update={"owner": "platform-team", "report": PLAN.report.model_copy(update={"recipients": []})}
    )
    monkeypatch.delenv("DBOPT_ALERT_TO", raising=False)
    assert recipients(plan) == [] and failure_notifier(plan) is None
    monkeypatch.setenv("DBOPT_ALERT_TO", "oncall@example.com, dba@example.com")
    assert recipients(plan) == ["dba@example.com", "oncall@example.com"]
    with pytest.raises(ValueError, match="need e-mail addresses, got \\['platform-team'\\]"):
        FailureEmail(["platform-team"])
