"""Schedules in the plan's time zone, no catchup, and runs outside the maintenance window that change
nothing: they say so and end with every change step skipped, never failed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dbopt.guardrails import window_gate
from dbopt.plan import load_plan, parse_plan
from dbopt.weekly_dag import build_dag
from tests.dag_runs import plan_yaml, run_plan, states

ROOT = Path(__file__).resolve().parents[1]
WEEK17 = ROOT / "include" / "plans" / "week17.yaml"


def test_week17_dag_runs_in_seoul_time_without_catchup(tmp_path):
    dag = build_dag(load_plan(WEEK17), WEEK17, tmp_path)
    assert dag.timezone.name == "Asia/Seoul"
    assert dag.timetable.expression == "0 9 * * 1" and str(dag.timetable.timezone) == "Asia/Seoul"
    assert not dag.catchup
    assert "(Asia/Seoul)" in dag.description  # the API reports the server's zone for every DAG in 3.3


def test_a_late_start_of_the_monday_slot_is_outside_the_window():
    plan = load_plan(WEEK17)  # mon-fri 09:00-17:00 Asia/Seoul
    slot = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # Monday 09:00 in Seoul
    assert window_gate(plan, {"logical time": slot, "start": slot}) is None
    late = datetime(2026, 11, 30, 15, 11, tzinfo=UTC)  # Tuesday 00:11 in Seoul: the unpaused DAG
    gate = window_gate(plan, {"logical time": slot, "start": late})
    assert gate and gate["decision"] == "NO-GO" and gate["outside_window"]
    assert gate["reason"].startswith("the run's start is outside the maintenance window")
    assert "Tue 00:11" in gate["reason"] and "nothing was changed" in gate["reason"]


@pytest.mark.airflow
def test_a_run_outside_the_window_changes_nothing_and_ends_skipped(sqlite_demo, tmp_path, monkeypatch):
    today = datetime.now(UTC).strftime("%a").lower()
    other = next(d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d != today)
    text = plan_yaml("t_window", "sqlite", f'maintenance_window: {{days: [{other}], start: "00:00", end: "23:59"}}')
    assert parse_plan(text, "t.yaml").maintenance_window.days == [other]
    run, record = run_plan(text, sqlite_demo, tmp_path, monkeypatch)
    st = states(run)
    assert str(run.state) == "success"
    assert st["health_check"] == "success" and st["report"] == "success"
    assert st["db.extract"] == st["db.create_index"] == st["db.judge"] == "skipped"
    assert st["failed_run_watcher"] == "skipped"
    gate = record["tasks"]["health_check"]
    assert gate["decision"] == "NO-GO" and "outside the maintenance window" in gate["reason"]
    (report,) = (tmp_path / "reports").glob("t_window/*/report.md")
    assert "outside the maintenance window" in report.read_text()
