"""Helpers for real DAG runs of the weekly plan DAG in tests (dag.test() on the project Airflow home)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbopt.plan import parse_plan
from dbopt.targets import open_target
from dbopt.weekly_dag import build_dag


def plan_yaml(plan_id: str, dialect: str, extra: str = "") -> str:
    return f"""
id: {plan_id}
targets: [{{name: db, conn_id: {plan_id}_db, dialect: {dialect}}}]
health_gate: {{on_missing: ignore}}
workload: {{min_calls: 2, top_n: 12}}
indexes: {{min_table_rows: 1000, lock_timeout_s: 2, retries: 1}}
benchmark: {{from_workload: 6, iterations: 10, warmup: 1}}
{extra}
"""


def connection_env(conn_id: str, url: str) -> tuple[str, str]:
    """An AIRFLOW_CONN_* variable (JSON form) for a database URL."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        conn = {"conn_type": "sqlite", "host": u.database}
    else:
        kind = "postgres" if u.get_backend_name().startswith("postgres") else "mysql"
        conn = {"conn_type": kind, "host": u.host, "port": u.port, "login": u.username, "schema": u.database}
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn)


def run_plan(text: str, url: str, tmp_path: Path, monkeypatch, conf: dict | None = None) -> tuple[Any, dict]:
    """Run the plan's DAG with dag.test(); return the run and its run record.

    dag.test() serializes the DAGs of the dags folder, so the plan goes into a plans directory that
    dags/dbopt_weekly.py reads (DBOPT_PLANS_DIR), exactly as in production.
    """
    plan = parse_plan(text, "test.yaml")
    plans, reports = tmp_path / "plans", tmp_path / "reports"
    plans.mkdir(exist_ok=True)
    (plans / f"{plan.id}.yaml").write_text(text)
    monkeypatch.setenv("DBOPT_PLANS_DIR", str(plans))
    monkeypatch.setenv("DBOPT_REPORTS_DIR", str(reports))
    monkeypatch.setenv(*connection_env(plan.targets[0].conn_id, url))
    dag = build_dag(plan, plans / f"{plan.id}.yaml", reports)
    run = dag.test(run_conf=conf or {})
    (record_path,) = reports.glob(f"{plan.id}/*/run.json")
    return run, json.loads(record_path.read_text())


def states(run) -> dict[str, str]:
    return {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state) for ti in
            run.get_task_instances()}  # fmt: skip


def dbopt_indexes(url: str) -> dict[str, bool]:
    """name → valid, for the indexes dbopt created."""
    with open_target(url) as target:
        return {ix.name: ix.valid for ix in target.indexes() if ix.name.startswith("dbopt_")}


CANARY_MONITOR = """\
  duration_s: 8
  interval_s: 0.5
  required_passes: 2
  metrics_conn_id: {plan_id}_prom
  rules:
    - {{metric: error_ratio, op: ">", threshold: 0.05, scope: canary, window_s: 60, min_requests: 10}}"""


def canary_plan(
    plan_id: str,
    project: str,
    services: list[tuple[str, str]],
    deploy_extra: str = "",
    *,
    pool_size: str = "15",
    monitor: str = CANARY_MONITOR,
) -> str:
    """A plan whose canary deploys ``DB_POOL_SIZE=pool_size`` and reads an error-ratio rule from the
    Prometheus connection ``{plan_id}_prom`` (see ``canary_connections``); ``deploy_extra``: more deploy
    fields, one YAML line each; ``monitor``: the monitor section's lines (``{plan_id}`` filled in)."""
    listed = ", ".join(f"{{name: {name}, region: {region}}}" for name, region in services)
    extra = "".join(f"\n  {line}" for line in deploy_extra.splitlines())
    return f"""
id: {plan_id}
targets: [{{name: db, conn_id: {plan_id}_db, dialect: postgres}}]
health_gate: {{on_missing: ignore}}
deploy:
  enabled: true
  project: {project}
  services: [{listed}]
  env: {{DB_POOL_SIZE: "{pool_size}"}}{extra}
monitor:
{monitor.format(plan_id=plan_id)}
"""


def canary_connections(monkeypatch, plan_id: str, cloud_extra: dict[str, Any], prometheus_port: int) -> None:
    """The Cloud Run connection (the stand-in's extra) and the plan's Prometheus connection."""
    cloud = {"conn_type": "google_cloud_platform", "extra": cloud_extra}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_RUN", json.dumps(cloud))
    prometheus = {"conn_type": "http", "host": "127.0.0.1", "port": prometheus_port}
    monkeypatch.setenv(f"AIRFLOW_CONN_{plan_id.upper()}_PROM", json.dumps(prometheus))
