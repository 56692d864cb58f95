"""The step declaration (``dbopt.steps``) is the one list the DAG, the record and the report follow.

Walking the declaration: every declared step is a task of the DAG (and every task is a step or
named wiring), the run record has a place for it, the report lists it, every step that changes the
database shows up in the index changes, and every result type survives XCom. A plan with two
targets on two engines and two Cloud Run services runs for real, each target with its own tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dbopt import steps
from dbopt.bench.stats import Summary
from dbopt.demo_data import generate, replay
from dbopt.history import facts
from dbopt.plan import parse_plan
from dbopt.report.run import run_view, write_run_report
from dbopt.results import (
    Advice,
    Backup,
    Bench,
    CacheWarm,
    CanaryOutcome,
    CloudSqlResize,
    Gate,
    IndexChange,
    IndexChanges,
    Judgement,
    Result,
    RollbackReverts,
    RolloutStep,
    ScalingForecast,
    Verdict,
    Verification,
    Workload,
)
from dbopt.run_record import canary_group_id, collect
from dbopt.targets import open_target
from dbopt.targets.base import IndexSpec, Statement
from dbopt.weekly_dag import build_dag
from tests.dag_runs import connection_env, states

# serial: runs alone after the parallel tests (Makefile); it resets server-wide statement statistics
# (performance_schema digests, pg_qualstats) that other tests read their workloads from
pytestmark = pytest.mark.serial

# Every optional step switched on: Cloud SQL backup, drops, a canary that reverts after a rollback.
FULL = parse_plan("""
id: full
targets:
  - name: db
    conn_id: db_conn
    dialect: sqlite
    cloud_sql: {project: p, instance: i, resize: {tier: db-custom-1-3840, replica_conn_id: replica_conn}}
indexes: {allow_drops: true}
cache: {redis_conn_id: redis_conn, statements: [{name: one, sql: "SELECT 1"}]}
scaling: {rules_file: include/scaling/rules.yaml, metrics_conn_id: prom_conn}
deploy: {enabled: true, project: p, services: [{name: api, region: us-central1}]}
monitor:
  revert_indexes_on_rollback: true
  rules: [{metric: long_transactions, op: ">", threshold: 0, scope: database}]
""")
CANARY = canary_group_id("api", "us-central1")
# Tasks that are wiring between steps, not steps: branches, the report, the mapped step's items.
WIRING = {"go_no_go", "report", "failed_run_watcher", "canary_gate", "db.create_index_items", "db.done",
          f"{CANARY}.promote_or_rollback"}  # fmt: skip

DROP = IndexChange("drop", "t", "ix_old", "dropped", 'DROP INDEX "ix_old"')
SAMPLES: dict[type, Any] = {
    Gate: Gate("GO", "all figures pass"),
    Workload: Workload("querylog", (Statement("d1", "SELECT * FROM t WHERE a = ?", 3, 30.0, 10.0),)),
    Advice: Advice(create=(IndexSpec("t", ("a",)),), queries=({"name": "q", "sql": ["SELECT 1"]},)),
    Backup: Backup("sqlite_file", "/tmp/b.db", True),
    Bench: Bench("timed", ({"name": "q", "summary": Summary(3, 1.0, 1.0, 1.2, 1.3, 0.1, 0.9, 1.3).to_dict()},)),
    IndexChange: IndexChange("create", "t", "dbopt_t_a", "created", 'CREATE INDEX "dbopt_t_a"'),
    Verification: Verification({"dbopt_t_a": ["q"]}, {"q": ["dbopt_t_a"]}, {"dbopt_t_a": 8192}),
    Judgement: Judgement("revert", (Verdict("t", "dbopt_t_a", False, "no gain"),), ("dbopt_t_a",)),
    IndexChanges: IndexChanges((DROP,)),
    RolloutStep: RolloutStep("api", extra={"new_revision": "api-2"}),
    CanaryOutcome: CanaryOutcome("rollback", "a rule failed", checks=2, failures=1),
    RollbackReverts: RollbackReverts({"db": (DROP,)}),
    CacheWarm: CacheWarm(1, 12, 0.01, keys=({"key": "k", "name": "one", "rows": 1, "bytes": 12, "query_ms": 0.2},),
                         hit_ratio_before={"ratio": 0.5, "hits": 1, "misses": 1, "window_s": 2.0, "method": "m"}),
    CloudSqlResize: CloudSqlResize("dry_run", "dry run", "i", steps=({"name": "check", "status": "planned",
                                                                       "detail": "i runs db-custom-2-7680"},)),
    ScalingForecast: ScalingForecast("include/scaling/rules.yaml", 1_796_000_400, ({
        "service": "api", "region": "us-central1", "local_time": "Mon 14:00 CST", "window": "default",
        "fixed": {"min_instances": 2, "max_instances": 80}, "forecast": None, "settings": None, "history_hours": 0,
        "chosen": "default", "bounds": {"min_instances": 2, "max_instances": 80}},)),
}  # fmt: skip


def _declared() -> dict[str, list[steps.Step]]:
    return {
        "run": steps.declared(steps.RUN_STEPS, FULL),
        "target": steps.declared(steps.TARGET_STEPS, FULL, FULL.targets[0]),
        "service": steps.declared(steps.SERVICE_STEPS, FULL),
    }


def _task_id(scope: str, name: str) -> str:
    return {"run": name, "target": f"db.{name}", "service": f"{CANARY}.{name}"}[scope]


def test_every_result_type_survives_xcom():
    for kind, sample in SAMPLES.items():
        stored = json.loads(json.dumps(sample.to_dict()))
        assert kind.from_dict(stored) == sample, kind.__name__
    # a field another module adds to a step's output is kept, not dropped on the way to the report
    assert Bench.from_dict({"method": "m", "queries": [], "seed": 7}).to_dict()["seed"] == 7


def test_the_dag_has_a_task_for_every_declared_step_and_nothing_else(tmp_path):
    dag = build_dag(FULL, tmp_path / "full.yaml", tmp_path)
    declared = {_task_id(scope, s.name) for scope, ss in _declared().items() for s in ss}
    tasks = {t.task_id for t in dag.tasks}
    assert declared <= tasks, f"declared steps without a task: {declared - tasks}"
    assert tasks - declared == WIRING, "a task that is neither a declared step nor known wiring"


class _TaskInstance:
    """What the report task's ``ti`` answers: each task's XCom, as Airflow stores it."""

    def __init__(self, xcoms: dict[tuple[str, str], Any]) -> None:
        self.xcoms = xcoms

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
        return {run_ids[0]: {task_id: "success" for task_id, key in self.xcoms if key == "return_value"}}

    def xcom_pull(self, task_ids: list[str], key: str = "return_value") -> list[Any]:
        value = self.xcoms.get((task_ids[0], key))
        return value if isinstance(value, list) else [value]


def test_every_declared_step_is_in_the_record_and_the_report(tmp_path):
    """Adding a step without a place in the record, the report or the index changes fails here."""
    dag = build_dag(FULL, tmp_path / "full.yaml", tmp_path)
    xcoms: dict[tuple[str, str], Any] = {}
    for scope, declared in _declared().items():
        for s in declared:
            assert s.result in SAMPLES, f"step {s.name}: add a sample {s.result.__name__} to SAMPLES"
            value = SAMPLES[s.result].to_dict()
            xcoms[(_task_id(scope, s.name), "return_value")] = [value] if s.mapped else value
    xcoms[("db.drop_unused", "skipped")] = "the advisor found no unused or redundant index"
    context = {"ti": _TaskInstance(xcoms), "dag": dag, "params": {},
               "dag_run": SimpleNamespace(dag_id="dbopt_full", run_id="manual__1", start_date=None)}  # fmt: skip

    record = json.loads(json.dumps(collect(FULL, context)))

    declared = _declared()
    assert {s.name for s in declared["run"]} <= set(record["tasks"])
    assert {s.name for s in declared["target"]} <= set(record["targets"]["db"])
    assert {s.name for s in declared["service"]} <= set(record["canaries"]["api/us-central1"])
    assert record["targets"]["db"]["skipped"] == {"drop_unused": "the advisor found no unused or redundant index"}
    view = run_view(record)
    assert [s["step"] for s in view["targets"][0]["steps"]] == [s.name for s in declared["target"]]
    assert [s["step"] for s in view["canaries"][0]["steps"]] == [s.name for s in declared["service"]]
    changed = {c["step"] for c in facts.index_changes(record)}
    assert changed == {s.name for ss in declared.values() for s in ss if s.changes_db}
    markdown = Path(write_run_report(record, tmp_path / "run")["markdown"]).read_text()
    for s in declared["target"]:
        assert s.name in markdown, s.name
    for title in ("## Cache warming", "### Cloud SQL downsizing by replica", "## Scaling for the next hour"):
        assert title in markdown, title


def test_a_rollback_revert_is_an_index_change_of_the_run():
    """The indexes dropped after a canary rollback were lost from the record's index changes."""
    record = {"targets": {}, "canaries": {"api/r": {"service": "api", "rollback": SAMPLES[RolloutStep].to_dict(),
              "revert_indexes_after_rollback": SAMPLES[RollbackReverts].to_dict()}}}  # fmt: skip
    (change,) = facts.index_changes(record)
    assert (change["target"], change["index"], change["done"]) == ("db", "ix_old", True)
    assert facts.outcome(record) == "rolled_back"


TWO = """
id: t_two
targets:
  - {name: logs, conn_id: t_two_logs, dialect: sqlite, tables: [worklogs]}
  - {name: app, conn_id: t_two_app, dialect: postgres, tables: [sessions]}
health_gate: {on_missing: ignore}
workload: {min_calls: 2, top_n: 12}
indexes: {min_table_rows: 1000, lock_timeout_s: 2, retries: 1}
benchmark: {from_workload: 4, iterations: 6, warmup: 1}
deploy:
  enabled: true
  project: demo-project
  env: {DB_POOL_SIZE: "15"}
  services:
    - {name: api, region: us-central1, target: app}
    - {name: worker, region: us-central1, target: logs}
monitor:
  duration_s: 6
  interval_s: 1
  required_passes: 2
  inconclusive_limit: 1
  on_inconclusive: rollback
  rules: [{metric: long_transactions, op: ">", threshold: 0, scope: database, window_s: 5}]
"""


@pytest.mark.airflow
def test_two_targets_on_two_engines_and_two_services(sqlite_demo, pg_url, tmp_path, monkeypatch):
    """Each target extracts, advises and backs up on its own tables; each service's canary reads its
    own target's database (PostgreSQL can tell long transactions: promote; SQLite cannot: the
    analysis stays inconclusive and rolls back); the record and the report show both of each."""
    from dbopt.cloud.standin import StandIn

    generate(pg_url, scale=0.02)
    with open_target(pg_url) as target:
        target.reset_workload()
    replay(pg_url, statements=200, scale=0.02)
    plan = parse_plan(TWO, "t_two.yaml")
    plans, reports = tmp_path / "plans", tmp_path / "reports"
    plans.mkdir()
    (plans / "t_two.yaml").write_text(TWO)
    for var, value in {"DBOPT_PLANS_DIR": plans, "DBOPT_REPORTS_DIR": reports}.items():
        monkeypatch.setenv(var, str(value))
    monkeypatch.setenv(*connection_env("t_two_logs", sqlite_demo))
    monkeypatch.setenv(*connection_env("t_two_app", pg_url))
    with StandIn() as standin:
        for service in ("api", "worker"):
            standin.run.seed("demo-project", "us-central1", service)
        conn = {"conn_type": "google_cloud_platform", "extra": standin.extra("demo-project")}
        monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_RUN", json.dumps(conn))
        run = build_dag(plan, plans / "t_two.yaml", reports).test()
    st = states(run)
    (record_path,) = reports.glob("t_two/*/run.json")
    record = json.loads(record_path.read_text())

    logs, app = record["targets"]["logs"], record["targets"]["app"]
    assert logs["extract"]["statements"] and app["extract"]["statements"], st
    assert all("worklogs" in s["query"].lower() for s in logs["extract"]["statements"])
    assert all("sessions" in s["query"].lower() for s in app["extract"]["statements"])
    assert {s["table"] for s in app["advise"]["create"]} <= {"sessions"}
    assert logs["backup"]["kind"] == "sqlite_file" and app["backup"]["kind"] == "ddl_dump"
    assert st["canary_api_us_central1.promote"] == "success", st
    assert st["canary_worker_us_central1.rollback"] == "success", st
    canaries = record["canaries"]
    assert canaries["api/us-central1"]["target"] == "app" and canaries["worker/us-central1"]["target"] == "logs"
    report = (record_path.parent / "report.md").read_text()
    assert "## Target logs (sqlite)" in report and "## Target app (postgres)" in report
    assert "### api in us-central1 (database rules on app)" in report
    assert "### worker in us-central1 (database rules on logs)" in report


@dataclass(frozen=True)
class TableCount(Result):
    tables: int


def _count_tables(ctx: steps.StepContext) -> TableCount:
    return TableCount(len(ctx.target.table_stats(["shop"])))


def test_adding_a_step_is_one_function_and_one_declaration(monkeypatch, sqlite_url, tmp_path):
    """What README's "Adding a step" says: the function above and one Step; the DAG, the run, the
    record and the report pick it up."""
    added = steps.Step("count_tables", "table count", TableCount, _count_tables, after=("drop_unused",))
    monkeypatch.setattr(steps, "TARGET_STEPS", (*steps.TARGET_STEPS, added))
    plan = parse_plan("id: added\ntargets: [{name: db, conn_id: db_conn, dialect: sqlite}]\n")
    assert "db.count_tables" in {t.task_id for t in build_dag(plan, tmp_path / "added.yaml", tmp_path).tasks}
    with open_target(sqlite_url) as target:
        target.execute("CREATE TABLE shop (id INTEGER PRIMARY KEY)")
        run = steps.run_target(plan, plan.targets[0], target, dry_run=False, reports_dir=tmp_path)
    assert run.results["count_tables"] == TableCount(1)
    spec = plan.targets[0]
    record = {
        "plan": "added",
        "run_id": "manual__1",
        "tasks": {"health_check": Gate("GO", "ok").to_dict()},
        "targets": {"db": {"dialect": "sqlite", **run.record(steps.declared(steps.TARGET_STEPS, plan, spec))}},
    }
    (target_view,) = run_view(json.loads(json.dumps(record)))["targets"]
    assert {"step": "count_tables", "what": "table count", "ran": True, "skipped": None, "state": None} in target_view[
        "steps"
    ]
