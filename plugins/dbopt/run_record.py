"""Gather what every task of a weekly run returned into one run record, and write the report.

Runs in the always-running ``report`` task, so it must cope with any subset of tasks having run:
a NO-GO run has only the gate; a failed build has no benchmark after; a rollback has the evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbopt.plan import Plan

TARGET_TASKS = ("extract", "advise", "backup", "bench_before", "create_index", "verify", "bench_after", "judge",
                "revert_indexes")  # fmt: skip
RUN_TASKS = ("health_check", "deploy_canary", "monitor_canary", "promote", "rollback")


def _pull(ti: Any, task_id: str) -> Any:
    value = ti.xcom_pull(task_ids=task_id, map_indexes=None) if task_id.endswith("create_index") else None
    if value is None:
        value = ti.xcom_pull(task_ids=task_id)
    if value is not None and not isinstance(value, (dict, list, str, int, float, bool)):
        value = list(value)  # a mapped task's LazyXComSequence
    return value


def _states(dag_run: Any) -> dict[str, str]:
    states: dict[str, str] = {}
    for ti in dag_run.get_task_instances() if hasattr(dag_run, "get_task_instances") else []:
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[key] = str(ti.state)
    return states


def collect(plan: Plan, context: dict[str, Any]) -> dict[str, Any]:
    ti = context["ti"]
    dag_run = context["dag_run"]
    record: dict[str, Any] = {
        "plan": plan.id,
        "dag_id": plan.dag_id,
        "run_id": dag_run.run_id,
        "params": dict(context.get("params") or {}),
        "started": str(getattr(dag_run, "start_date", "") or ""),
        "tasks": {t: _pull(ti, t) for t in RUN_TASKS},
        "targets": {},
    }
    for spec in plan.targets:
        record["targets"][spec.name] = {
            "dialect": spec.dialect,
            "conn_id": spec.conn_id,
            **{t: _pull(ti, f"{spec.name}.{t}") for t in TARGET_TASKS},
        }
    return record


def write_record(record: dict[str, Any], reports_dir: Path) -> Path:
    run_dir = reports_dir / record["plan"] / record["run_id"].replace(":", "_").replace("+", "_")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    return path


def collect_and_report(plan: Plan, context: dict[str, Any], reports_dir: Path) -> dict[str, Any]:
    record = collect(plan, context)
    path = write_record(record, reports_dir)
    print(f"dbopt report: {path}")
    return {"record": str(path)}
