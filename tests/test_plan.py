"""The plan model: shipped plans validate; bad plans fail with file, line, field path and fix."""

from __future__ import annotations

import re
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
    assert plan.deploy.steps == [10, 25, 50] and plan.deploy.on_region_failure == "rollback_region"
    rules = {(r.metric, r.threshold, r.sustained_for_s) for r in plan.monitor.rules}
    assert ("error_ratio", 0.01, 300) in rules and ("latency_p95_ms", 100, 0) in rules
    assert plan.targets[0].cloud_sql is not None


def _steps(replacement: str, text: str = WEEK17) -> str:
    """week17 with its deploy.steps line replaced (by other deploy lines, or nothing)."""
    return re.sub(r"(?m)^  steps: .*\n", replacement, text)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("  steps: [25, 10]\n", "deploy.steps: [25, 10] must increase step by step (e.g. [10, 25, 50])"),
        ("  steps: [10, 100]\n", "deploy.steps: [100] are not whole percentages between 1 and 99"),
        ("  steps: [10, '25']\n", "deploy.steps: ['25'] are not whole percentages"),
        ("  steps: []\n", "deploy.steps: expected a list of traffic percentages such as [10, 25, 50]"),
        ("  steps: [15, 25]\n", "canary_percent 10 and steps [15, 25] disagree: the canary's first share is "
                                "steps[0]; drop canary_percent or set it to 15"),
        ("  on_region_failure: all\n", "deploy.on_region_failure: Input should be 'rollback_region' or 'rollback_all'"),
    ],
)  # fmt: skip
def test_deploy_steps_are_checked_with_field_and_fix(steps: str, expected: str) -> None:
    (msg,) = problems(_steps(steps))
    assert expected in msg and msg.startswith("line ")


def test_steps_set_the_first_share_when_canary_percent_is_left_out() -> None:
    plan = parse_plan(_steps("  steps: [5, 20]\n", re.sub(r"(?m)^  canary_percent: .*\n", "", WEEK17)), "w.yaml")
    assert plan.deploy.canary_percent == 5 and plan.deploy.steps == [5, 20]
    without = parse_plan(_steps(""), "w.yaml")  # no steps: one share, as before
    assert without.deploy.steps is None and without.deploy.canary_percent == 10


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


def _broken_next_to_week17(tmp_path: Path, monkeypatch, plan_id: str, text: str):
    """Parse the weekly DAG file with week17 and one broken plan; week17 must keep its DAG."""
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "week17.yaml").write_text(WEEK17)
    (tmp_path / f"{plan_id}.yaml").write_text(text)
    monkeypatch.setenv("DBOPT_PLANS_DIR", str(tmp_path))
    bag = DagBag(dag_folder=str(PLANS.parents[1] / "dags" / "dbopt_weekly.py"))
    assert bag.import_errors == {}
    assert {"dbopt_week17", f"dbopt_{plan_id}"} <= set(bag.dags)
    assert len(bag.dags["dbopt_week17"].tasks) > 10
    broken = bag.dags[f"dbopt_{plan_id}"]
    assert "invalid-plan" in broken.tags and [t.task_id for t in broken.tasks] == ["plan_error"]
    return broken


def test_dag_file_shows_a_bad_plan_as_its_own_dag_and_keeps_the_others(tmp_path, monkeypatch):
    text = WEEK17.replace("id: week17", "id: broken").replace("dialect: mysql", "dialect: db2")
    assert "targets.0.dialect" in _broken_next_to_week17(tmp_path, monkeypatch, "broken", text).doc_md


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
    # this region's revisions only, read with the deploy connection's credentials (resolved at run time):
    # without a location the source could not even be built, and every canary rolled back
    deploy = dag.get_task("canary_ion_api_us_central1.deploy")
    assert metrics["location"] == "us-central1" and metrics["gcp_conn_id"] == deploy.gcp_conn_id
    assert "credentials" not in metrics
    from dbopt.metrics.sources import sources_from_config

    config = {k: v for k, v in metrics.items() if k != "gcp_conn_id"} | {"credentials": "anonymous"}
    config["scopes"] = {"canary": "api-00002", "baseline": "api-00001", "service": None}
    (source,) = sources_from_config({"metrics": config}).values()
    assert source.location == "us-central1"


def test_names_airflow_cannot_use_are_plan_errors():
    """A target named like a table with a space passed validation, then took every weekly DAG down."""
    (msg,) = problems(WEEK17.replace("name: ion-primary", "name: work logs"))
    assert msg.startswith("line 17: targets.0.name: 'work logs' cannot be a target name")
    assert "letters, digits, '_' and '-'" in msg and "e.g. 'work_logs'" in msg
    (msg,) = problems(WEEK17.replace("{name: ion-api, region: us-central1}", "{name: ion api, region: us-central1}"))
    assert "deploy.services.0.name" in msg and "cannot be a Cloud Run service name" in msg


def test_a_service_of_a_plan_with_several_targets_names_its_database():
    two = WEEK17.replace("targets:\n", "targets:\n  - {name: archive, conn_id: archive_pg, dialect: postgres}\n", 1)
    (msg,) = problems(two)
    assert "deploy.services ion-api" in msg and "target: NAME" in msg
    plan = parse_plan(two.replace("region: us-central1}", "region: us-central1, target: archive}"))
    assert plan.service_target(plan.deploy.services[0]) == "archive"
    (msg,) = problems(two.replace("region: us-central1}", "region: us-central1, target: nope}"))
    assert "target 'nope' is not a target of the plan" in msg


def test_dag_file_isolates_any_error_while_building_one_plans_dag(tmp_path, monkeypatch):
    """Not only plan errors: whatever fails while one plan's DAG is built (here two services whose task
    groups collide) becomes that plan's broken-plan DAG, and the other plans keep theirs."""
    twins = "{name: ion-api, region: us-central1}\n    - {name: ion_api, region: us-central1}"
    text = WEEK17.replace("id: week17", "id: twins").replace("{name: ion-api, region: us-central1}", twins)
    assert "could not be built" in _broken_next_to_week17(tmp_path, monkeypatch, "twins", text).doc_md
