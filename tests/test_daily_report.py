"""The daily report: built from a real history store, sent by the real daily DAG (``dag.test()``)
through Airflow's SMTP provider to a real SMTP server on loopback."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbopt.history import HistoryStore
from dbopt.report.daily import build_daily_report
from tests.mail_fixtures import Inbox, smtp_inbox
from tests.run_records import measured_record, no_go_record

__all__ = ["smtp_inbox"]  # the fixture, imported for pytest

ROOT = Path(__file__).resolve().parents[1]
SCALING = {"service": "api", "region": "asia-northeast3", "window": "evening", "local_time": "Mon 17:00 KST",
           "before": {"min_instances": 2, "max_instances": 10}, "after": {"min_instances": 1, "max_instances": 6},
           "applied": True}  # fmt: skip
BILLING_PLAN = """\
id: billing
owner: billing-team
targets: [{name: main, conn_id: billing_pg, dialect: postgres}]
report: {recipients: [billing-team@example.com, dba@example.com]}
"""


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    return measured_record(tmp_path_factory.mktemp("shop"))


@pytest.fixture
def history(tmp_path, measured, monkeypatch) -> str:
    """A history with today's runs of plan 'orders' (one measured, one NO-GO) and a scaling change."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    with HistoryStore(url) as store:
        store.record_run(measured)
        store.record_run(no_go_record())
        store.record_scaling("dbopt_scaling", "scheduled__2026-11-23T08:00:00+00:00", [SCALING])
    monkeypatch.setenv("DBOPT_HISTORY_URL", url)
    return url


def test_daily_summary_lists_every_plan_with_outcome_health_and_charts(history):
    with HistoryStore(history) as store:
        report = build_daily_report(store, datetime.now(UTC), tz="Asia/Seoul", plan_ids=["billing"])
    assert not report.empty
    assert report.email.subject.endswith(": 2 run(s), 1 NO-GO, 1 scaling change(s)")
    rows = {p["plan"]: p for p in report.plans}
    assert rows["orders"]["runs"] == 2 and rows["orders"]["kept"] == 1 and rows["orders"]["reverted"] == 1
    assert rows["orders"]["health_decision"] == "NO-GO"  # the newest gate of the plan
    assert rows["billing"]["runs"] == 0 and rows["billing"]["health_decision"] is None
    html = report.email.html
    assert re.findall(r'data-plan="([^"]+)"', html) == ["billing", "orders"]
    assert "no run today" in html and "asia-northeast3" in html and "2–10" in html and "1–6" in html
    assert set(re.findall(r'src="cid:([^"]+)"', html)) == set(report.email.images)
    assert "trend@dbopt" in report.email.images and len(report.email.images) == 2  # trend + the measured run


def test_an_empty_day_says_so(tmp_path):
    with HistoryStore(f"sqlite:///{tmp_path / 'h.db'}") as store:
        report = build_daily_report(store, datetime.now(UTC) - timedelta(days=30))
    assert report.empty and report.email.subject.endswith(": nothing new") and not report.email.images


def _daily_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=ROOT / "dags" / "dbopt_daily_report.py")
    assert bag.import_errors == {}
    dag = bag.get_dag("dbopt_daily_report")
    assert dag is not None
    return dag


@pytest.mark.airflow
def test_daily_dag_sends_one_html_email_with_inline_charts(history, smtp_inbox: Inbox, tmp_path, monkeypatch):
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "billing.yaml").write_text(BILLING_PLAN)
    monkeypatch.setenv("DBOPT_PLANS_DIR", str(plans))
    monkeypatch.delenv("DBOPT_REPORT_TO", raising=False)
    dag = _daily_dag()
    assert dag.timetable.expression == "0 17 * * *" and str(dag.timetable.timezone) == "Asia/Seoul"

    run = dag.test()

    assert run.state == "success"
    (msg,) = smtp_inbox.messages
    assert smtp_inbox.recipients == [["billing-team@example.com", "dba@example.com"]]
    assert re.fullmatch(r"\[dbopt\] Daily report \d{4}-\d\d-\d\d: 2 run\(s\), 1 NO-GO, 1 scaling change\(s\)",
                        msg["Subject"])  # fmt: skip
    assert msg.get_content_type() == "multipart/related"
    html = msg.get_body(("html",)).get_content()
    assert re.findall(r'data-plan="([^"]+)"', html) == ["billing", "orders"]
    images = {p["Content-ID"].strip("<>"): p for p in msg.iter_parts() if p.get_content_type() == "image/png"}
    assert images and set(re.findall(r'src="cid:([^"]+)"', html)) == set(images)
    assert all(p.get_content().startswith(b"\x89PNG") for p in images.values())


@pytest.mark.airflow
def test_daily_dag_skips_sending_when_nothing_is_new(smtp_inbox: Inbox, tmp_path, monkeypatch):
    monkeypatch.setenv("DBOPT_HISTORY_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("DBOPT_REPORT_TO", "dba@example.com")

    run = dag_run = _daily_dag().test()

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"send_daily_report": "skipped"} and run.state == "success"
    assert smtp_inbox.messages == []


def test_a_dry_run_counts_as_no_change_and_each_plan_gets_one_chart(tmp_path, measured):
    """A dry run builds and drops nothing: it adds nothing to built / kept / reverted, and a day with
    several runs of a plan charts only the newest one."""
    dry = measured_record(tmp_path, "manual__2026-11-23T10:00:00+09:00", dry_run=True)
    assert {c["status"] for c in dry["targets"]["shop"]["create_index"]} == {"dry_run"}
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as store:
        store.record_run(measured)
        store.record_run(dry)
        report = build_daily_report(store, datetime.now(UTC), tz="Asia/Seoul")
    runs = {r["run_id"]: r for r in report.runs}
    assert runs[dry["run_id"]]["outcome"] == "dry_run:no_change"
    assert (runs[dry["run_id"]]["created"], runs[dry["run_id"]]["kept"], runs[dry["run_id"]]["reverted"]) == (0, 0, 0)
    (orders,) = report.plans
    assert (orders["kept"], orders["reverted"]) == (1, 1)  # the measured run's only
    charts = [cid for cid in report.email.images if cid != "trend@dbopt"]
    assert charts == [f"{runs[dry['run_id']]['chart']}@dbopt"]  # the newest run of the plan
