"""Gather what every task of a weekly run returned into one run record, and write the report.

Runs in the always-running ``report`` task, so it must cope with any subset of tasks having run:
a NO-GO run has only the gate; a failed build has no benchmark after; a rollback has the evidence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbopt.plan import Plan

TARGET_TASKS = ("extract", "advise", "backup", "bench_before", "create_index", "verify", "bench_after", "judge",
                "revert_indexes", "drop_unused")  # fmt: skip
RUN_TASKS = ("health_check",)
CANARY_TASKS = {"deploy_canary": "deploy", "shift_traffic": "shift_traffic", "monitor_canary": "monitor",
                "promote": "promote", "rollback": "rollback",
                "revert_indexes_after_rollback": "revert_indexes_after_rollback"}  # fmt: skip


def _pull(ti: Any, task_id: str, mapped: bool) -> Any:
    # A list of task ids always gets a list back: every map index of a mapped task, in order
    # (a single id would unwrap a one-element mapping to a bare value).
    values = [v for v in ti.xcom_pull(task_ids=[task_id]) if v is not None]
    if mapped:
        return values
    return values[0] if values else None


def collect(plan: Plan, context: dict[str, Any]) -> dict[str, Any]:
    ti = context["ti"]
    dag_run = context["dag_run"]
    present = {t.task_id: t for t in context["dag"].tasks}

    def pull(task_id: str) -> Any:
        task = present.get(task_id)
        return None if task is None else _pull(ti, task_id, mapped=hasattr(task, "expand_input"))

    record: dict[str, Any] = {
        "plan": plan.id,
        "dag_id": plan.dag_id,
        "run_id": dag_run.run_id,
        "params": dict(context.get("params") or {}),
        "started": str(getattr(dag_run, "start_date", "") or ""),
        "tasks": {t: pull(t) for t in RUN_TASKS},
        "targets": {},
    }
    canaries = {}
    for service in plan.deploy.services if plan.deploy.enabled else []:
        group = canary_group_id(service.name, service.region)
        canaries[f"{service.name}/{service.region}"] = {k: pull(f"{group}.{t}") for k, t in CANARY_TASKS.items()}
    record["canaries"] = canaries
    record["task_states"] = task_states(ti, dag_run, set(present))
    # the report details one canary: the first service's (every service's results are in "canaries")
    record["tasks"] |= next(iter(canaries.values()), {})
    for spec in plan.targets:
        record["targets"][spec.name] = {
            "dialect": spec.dialect,
            "conn_id": spec.conn_id,
            **{t: pull(f"{spec.name}.{t}") for t in TARGET_TASKS},
        }
    return record


def task_states(ti: Any, dag_run: Any, task_ids: set[str]) -> dict[str, str]:
    """task id → state in this run, as the scheduler left them (the report runs last: all are final
    but its own and the watcher's); a mapped task shows its map indexes' states joined when they differ."""
    raw = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
    states: dict[str, set[str]] = {}
    for key, state in raw.items():  # mapped instances come as "task_id_<map index>"
        task_id = key if key in task_ids else key.rsplit("_", 1)[0]
        states.setdefault(task_id, set()).add(str(state) if state else "none")
    return {task_id: "/".join(sorted(found)) for task_id, found in sorted(states.items())}


def first_failure(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The earliest failed attempt of this run's steps (history order) and its error message."""
    for step in steps:
        if step["status"] == "failed":
            task = f"{step['target']}.{step['step']}" if step["target"] else step["step"]
            return {"task": task, "error": (step.get("payload") or {}).get("error")}
    return None


def canary_group_id(service: str, region: str) -> str:
    """The task group of one service's canary in the weekly DAG."""
    return f"canary_{service}_{region}".replace("-", "_")


def write_record(record: dict[str, Any], reports_dir: Path) -> Path:
    run_dir = reports_dir / record["plan"] / record["run_id"].replace(":", "_").replace("+", "_")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    return path


def collect_and_report(plan: Plan, context: dict[str, Any], reports_dir: Path) -> dict[str, Any]:
    """Write the run record, append it to the history (a retried report task adds nothing), then the
    HTML/Markdown report — after the history, so this run shows in its own trend chart."""
    from dbopt.history import HistoryStore
    from dbopt.report.run import write_run_report

    record = collect(plan, context)
    with HistoryStore() as history:
        record["first_failure"] = first_failure(history.steps(record["run_id"], dag_id=record["dag_id"]))
    path = write_record(record, reports_dir)
    with HistoryStore() as history:
        history.record_run(record)
        report = write_run_report(record, path.parent, history=history)
    print(Path(report["markdown"]).read_text())
    print(f"dbopt report: {report['html']}")
    return {"record": str(path), **report}


def step_recorder(plan_id: str, status: str) -> Callable[[dict[str, Any]], None]:
    """A task callback appending the task's outcome to the history (a crash loses no finished step)."""

    def record(context: dict[str, Any]) -> None:
        from dbopt.history import HistoryStore

        ti = context["ti"]
        if status == "success":
            payload = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)
        else:
            payload = {"error": str(context.get("exception"))}
        with HistoryStore() as history:
            history.record_task(plan_id, ti, status, payload)

    return record
