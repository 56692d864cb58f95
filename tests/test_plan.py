"""The plan model: shipped plans validate; bad plans fail with file, line, field path and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbopt.plan import PlanError, iter_plans, load_plan, parse_plan, plan_files

PLANS = Path(__file__).resolve().parents[1] / "include" / "plans"
WEEK17 = (PLANS / "week17.yaml").read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_plan(text, "week17.yaml")
    assert "week17.yaml" in str(info.value)
    return info.value.problems


def test_shipped_plans_are_valid():
    files = plan_files(PLANS)
    assert {p.stem for p in files} >= {"week17", "demo"}
    for path in files:
        assert load_plan(path).id == path.stem


def test_week17_reproduces_the_seed_plan():
    plan = load_plan(PLANS / "week17.yaml")
    assert plan.schedule.timezone == "Asia/Seoul"
    assert plan.health_gate.error_rate_max_pct == 0.5 and plan.health_gate.p95_ms_max == 50
    assert plan.benchmark.targets == {"mean_ms": 15, "p95_ms": 25}
    assert plan.deploy.canary_percent == 10 and plan.deploy.env["DB_POOL_SIZE"] == "15"
    rules = {(r.metric, r.threshold, r.sustained_for_s) for r in plan.monitor.rules}
    assert ("error_ratio", 0.01, 300) in rules and ("latency_p95_ms", 100, 0) in rules
    assert plan.targets[0].cloud_sql is not None


def test_typo_in_a_field_names_line_path_and_suggestion():
    (msg,) = problems(WEEK17.replace("storage_budget_mb", "storage_bugdet_mb"))
    assert msg.startswith("line 46: indexes.storage_bugdet_mb: unknown field")
    assert "did you mean 'storage_budget_mb'" in msg


def test_wrong_type():
    (msg,) = problems(WEEK17.replace("iterations: 100", "iterations: lots"))
    assert "benchmark.iterations" in msg and "integer" in msg and "'lots'" in msg and msg.startswith("line 53:")


def test_unknown_dialect():
    (msg,) = problems(WEEK17.replace("dialect: mysql", "dialect: oracle"))
    assert "targets.0.dialect" in msg and "'postgres', 'mysql' or 'sqlite'" in msg and "oracle" in msg


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("[personas,", '["personas; DROP TABLE users; --",', "targets.0.tables.0"),
        ("table: analytics", "table: 'analytics\"; DROP TABLE t; --'", "indexes.explicit.0.table"),
        ("[user_id, event_date DESC]", '[user_id, "event_date DESC; DROP TABLE t"]', "indexes.explicit.0.columns.1"),
    ],
)
def test_sql_in_identifiers_is_rejected(old, new, path):
    (msg,) = problems(WEEK17.replace(old, new, 1))
    assert path in msg
    assert "quotes, spaces and SQL are not allowed" in msg or "ASC or DESC" in msg


def test_benchmark_sql_must_be_read_only():
    text = WEEK17.replace("from_workload: 20", "queries: [{name: q, sql: 'DELETE FROM analytics'}]")
    (msg,) = problems(text)
    assert "benchmark.queries.0.sql" in msg and "read-only" in msg


def test_invalid_yaml_and_missing_fields():
    (msg,) = problems("id: x\ntargets: [\n")
    assert "not valid YAML" in msg
    msgs = problems("description: no id\n")
    assert any("id: Field required — add it" in m for m in msgs)


def test_bad_plan_does_not_hide_the_others(tmp_path):
    (tmp_path / "week17.yaml").write_text(WEEK17)
    (tmp_path / "broken.yaml").write_text(WEEK17.replace("id: week17", "id: broken").replace("cron:", "crn:"))
    results = dict((p.stem, r) for p, r in iter_plans(tmp_path))
    assert isinstance(results["broken"], PlanError) and "did you mean 'cron'" in str(results["broken"])
    assert results["week17"].id == "week17"


def test_id_must_match_file_name(tmp_path):
    (tmp_path / "week18.yaml").write_text(WEEK17)
    with pytest.raises(PlanError, match="must equal the file name"):
        load_plan(tmp_path / "week18.yaml")


def test_dag_file_shows_a_bad_plan_as_its_own_dag_and_keeps_the_others(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "week17.yaml").write_text(WEEK17)
    (tmp_path / "broken.yaml").write_text(
        WEEK17.replace("id: week17", "id: broken").replace("dialect: mysql", "dialect: db2")
    )
    monkeypatch.setenv("DBOPT_PLANS_DIR", str(tmp_path))
    bag = DagBag(dag_folder=str(PLANS.parents[1] / "dags" / "dbopt_weekly.py"))
    assert bag.import_errors == {}
    assert {"dbopt_week17", "dbopt_broken"} <= set(bag.dags)
    broken = bag.dags["dbopt_broken"]
    assert "invalid-plan" in broken.tags and "targets.0.dialect" in broken.doc_md
    assert [t.task_id for t in broken.tasks] == ["plan_error"]
    assert len(bag.dags["dbopt_week17"].tasks) > 10


def test_monitor_rules_need_a_metrics_source():
    text = WEEK17.replace("  metrics_conn_id: prometheus_default\n  rules:", "  rules:")
    (msg,) = problems(text)
    assert "monitor" in msg and "metrics_conn_id" in msg


def test_canary_reads_cloud_monitoring_when_the_plan_says_so():
    from dbopt.weekly_dag import build_dag

    text = WEEK17.replace(
        "  metrics_conn_id: prometheus_default\n  rules:", "  metrics_source: cloud_monitoring\n  rules:"
    )
    dag = build_dag(parse_plan(text, "week17.yaml"), PLANS / "week17.yaml", Path("/tmp/reports"))
    sensor = dag.get_task("canary_ion_api_us_central1.monitor")
    metrics = sensor.sources["metrics"]
    assert metrics["kind"] == "cloud_monitoring" and metrics["service"] == "ion-api"
    assert metrics["project"] == "ion-mentoring" and "new_revision" in metrics["scopes"]["canary"]
