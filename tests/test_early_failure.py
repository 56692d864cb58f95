"""A run that fails early: the week-17 plan with its database connection missing fails at the health
check, rolls nothing back (nothing was deployed or built), and its report names the failure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dbopt.plan import load_plan
from dbopt.run_record import canary_group_id
from dbopt.weekly_dag import build_dag
from tests.dag_runs import states

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.airflow


def test_week17_without_its_connection_fails_at_the_health_check_and_rolls_nothing_back(tmp_path, monkeypatch):
    plans, reports = tmp_path / "plans", tmp_path / "reports"
    plans.mkdir()
    text = (ROOT / "include" / "plans" / "week17.yaml").read_text()
    # any time of day: outside its window the run would stop at the window, before the connection
    source = plans / "week17.yaml"
    source.write_text(re.sub(r"(?m)^maintenance_window:.*$", "", text))
    monkeypatch.setenv("DBOPT_PLANS_DIR", str(plans))
    monkeypatch.setenv("DBOPT_REPORTS_DIR", str(reports))
    monkeypatch.delenv("AIRFLOW_CONN_ION_PRIMARY_MYSQL", raising=False)
    plan = load_plan(source)
    run = build_dag(plan, source, reports).test(run_conf={"skip_deploy": True})

    st = states(run)
    group = canary_group_id("ion-api", "us-central1")
    assert str(run.state) == "failed"
    assert st["health_check"] == "failed"
    assert st[f"{group}.deploy"] == "upstream_failed"
    assert st[f"{group}.rollback"] in ("upstream_failed", "skipped")  # never ran
    assert st["ion-primary.revert_indexes"] in ("upstream_failed", "skipped")
    assert st["report"] == "success" and st["failed_run_watcher"] == "failed"

    (record_path,) = reports.glob("week17/*/run.json")
    record = json.loads(record_path.read_text())
    assert record["first_failure"]["task"] == "health_check"
    assert "ion_primary_mysql" in record["first_failure"]["error"]
    assert record["task_states"]["ion-primary.create_index"] == "upstream_failed"
    markdown = record_path.with_name("report.md").read_text()
    assert "First failure: health_check" in markdown and "ion_primary_mysql" in markdown
    assert "create_index upstream_failed" in markdown and "create_index ok" not in markdown
