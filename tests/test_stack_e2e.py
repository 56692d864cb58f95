"""The demo DAG on Airflow's real components, as a team runs it: api-server, scheduler, dag-processor,
triggerer (and a Celery worker on this machine's Redis), a PostgreSQL metadata database made for the
test, the run triggered through the REST API with Params. Processes, the metadata database and the
broker keys are gone afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis

from dbopt.demo import prepare
from dbopt.history import HistoryStore
from dbopt.rest_api import Api
from dbopt.stack import Stack, StackConfig
from tests.conftest import PG_ADMIN

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("DBOPT_TEST_REDIS", "redis://127.0.0.1:6379/9")
DAG_ID = "dbopt_demo"
CONF = {"dry_run": False, "storage_budget_mb": 64}
pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]


@pytest.fixture
def metadata_db() -> Iterator[str]:
    name = f"airflow_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{PG_ADMIN.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stack(tmp_path: Path, metadata_url: str, executor: str, prefix: str = "", history_url: str = "") -> Stack:
    plans = tmp_path / "plans"
    plans.mkdir()
    shutil.copy(ROOT / "include" / "plans" / "demo.yaml", plans)
    db = tmp_path / "worklogs.db"
    prepare(db, scale=0.03, statements=150)  # small: this test is about the components, not the advice
    env = {
        "DBOPT_PLANS_DIR": str(plans),
        "DBOPT_REPORTS_DIR": str(tmp_path / "reports"),
        "AIRFLOW_CONN_DBOPT_DEMO": f'{{"conn_type": "sqlite", "host": "{db}"}}',
    } | ({"DBOPT_HISTORY_URL": history_url} if history_url else {})
    config = StackConfig(home=tmp_path / "airflow", metadata_url=metadata_url, executor=executor,
                         broker_url=REDIS_URL if prefix else None, broker_prefix=prefix, extra_env=env)  # fmt: skip
    return Stack(config)


def _run_demo(stack: Stack) -> tuple[Api, dict, dict[str, str | None], list[str]]:
    stack.start()
    stack.wait_until_up()
    api = Api(stack.config.url, stack.config.password())
    api.wait_for_dag(DAG_ID)
    run_id = api.trigger(DAG_ID, CONF)
    run = api.wait_for_run(DAG_ID, run_id)
    tasks = [t["task_id"] for t in api.call("GET", f"/api/v2/dags/{DAG_ID}/tasks")["tasks"]]
    return api, run, api.task_states(DAG_ID, run_id), tasks


def _assert_demo_ran(run: dict, states: dict[str, str | None], tasks: list[str], logs: Path) -> None:
    assert run["state"] == "success", f"{states}; logs in {logs}"
    assert run["conf"] == CONF  # the Params arrived
    # the failure watcher is skipped, so are the steps with nothing to do (a revert, the canary when the
    # plan does not deploy); everything else succeeded
    skipped = {t for t, s in states.items() if s == "skipped"}
    assert "failed_run_watcher" in skipped
    assert all(s == "success" for t, s in states.items() if t not in skipped), states
    assert {t.split("[")[0] for t in states} == set(tasks)  # every task of the DAG has an instance


def test_demo_on_local_executor(tmp_path, metadata_db):
    stack = _stack(tmp_path, metadata_db, "LocalExecutor")
    try:
        api, run, states, tasks = _run_demo(stack)
        _assert_demo_ran(run, states, tasks, stack.logs)
        # the judge's log: one readable line per index, not the whole returned evidence
        log = api.task_log(DAG_ID, run["dag_run_id"], "worklogs.judge")
        assert re.search(r"(KEEP  |REVERT) dbopt_\w+ on \w+: .*p95 [\d.]+→[\d.]+ ms, p=", log), log[-3000:]
        assert "Returned value was" not in log
        # the UI's connection form offers dbopt's connection types
        hook_meta = {h["connection_type"] for h in api.call("GET", "/ui/connections/hook_meta")}
        assert {"sqlite", "mysql", "postgres"} <= hook_meta
    finally:
        stack.stop()
    assert stack.running_groups() == []  # no component, no task process left behind


def test_demo_on_celery_worker_with_redis(tmp_path, metadata_db):
    prefix = f"dbopt-e2e-{uuid.uuid4().hex[:8]}:"
    broker = redis.Redis.from_url(REDIS_URL)
    # as docker-compose.yaml has it: the history in the metadata database, shared by every component
    history_url = metadata_db.replace("postgresql+psycopg2://", "postgresql://")
    stack = _stack(tmp_path, metadata_db, "CeleryExecutor", prefix, history_url)
    try:
        _, run, states, tasks = _run_demo(stack)
        _assert_demo_ran(run, states, tasks, stack.logs)
        ran = sum(s == "success" for s in states.values())
        assert (stack.logs / "celery-worker.log").read_text().count("Executing workload in Celery") >= ran
        assert list(broker.scan_iter(f"{prefix}*"))  # the broker really was this Redis
        with HistoryStore(history_url) as history:  # what the worker's tasks recorded, read from elsewhere
            (recorded,) = history.runs(datetime.now(UTC) - timedelta(hours=1), plan_id="demo")
            steps = {s["step"] for s in history.steps(run["dag_run_id"], dag_id=DAG_ID)}
        assert recorded["run_id"] == run["dag_run_id"] and recorded["outcome"] != "incomplete", recorded
        assert {"extract", "advise", "create_index", "judge"} <= steps, steps
    finally:
        stack.stop()
        for key in broker.scan_iter(f"{prefix}*"):
            broker.delete(key)
    assert stack.running_groups() == []
    assert not list(broker.scan_iter(f"{prefix}*"))
