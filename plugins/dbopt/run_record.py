"""Gather what every task of a weekly run returned into one run record, and write the report.

Runs in the always-running ``report`` task, so it must cope with any subset of tasks having run:
a NO-GO run has only the gate; a failed build has no benchmark after; a rollback has the evidence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbopt import steps
from dbopt.plan import Plan

SKIPPED_KEY = "skipped"  # the XCom key under which a skipped step leaves its reason


def _pull(ti: Any, task_id: str, mapped: bool, key: str = "return_value") -> Any:
    # A list of task ids always gets a list back: every map index of a mapped task, in order
    # (a single id would unwrap a one-element mapping to a bare value).
    values = [v for v in ti.xcom_pull(task_ids=[task_id], key=key) if v is not None]
    if mapped:
        return values
    return values[0] if values else None


def collect(plan: Plan, context: dict[str, Any]) -> dict[str, Any]:
    """The run record: every declared step's result (its ``to_dict`` form) by scope and name, and the
    reason of every step that skipped itself."""
    ti = context["ti"]
    dag_run = context["dag_run"]
    present = {t.task_id for t in context["dag"].tasks}

    def scope(group: str, declared: list[steps.Step]) -> dict[str, Any]:
        out: dict[str, Any] = {"skipped": {}}
        for s in declared:
            task_id = f"{group}.{s.name}" if group else s.name
            if task_id not in present:
                out[s.name] = None
                continue
            out[s.name] = _pull(ti, task_id, s.mapped)
            if reason := _pull(ti, task_id, False, key=SKIPPED_KEY):
                out["skipped"][s.name] = reason
        return out

    record: dict[str, Any] = {
        "plan": plan.id,
        "dag_id": plan.dag_id,
        "run_id": dag_run.run_id,
        "params": dict(context.get("params") or {}),
        "started": str(getattr(dag_run, "start_date", "") or ""),
        "tasks": scope("", steps.declared(steps.RUN_STEPS, plan)),
        "targets": {},
        "canaries": {},
    }
    record["task_states"] = task_states(ti, dag_run, set(present))
    for spec in plan.targets:
        results = scope(spec.name, steps.declared(steps.TARGET_STEPS, plan, spec))
        record["targets"][spec.name] = {"dialect": spec.dialect, "conn_id": spec.conn_id, **results}
    for service in plan.deploy.services if plan.deploy.enabled else []:
        group = canary_group_id(service.name, service.region)
        record["canaries"][canary_key(service.name, service.region)] = {
            "service": service.name, "region": service.region, "group": group,
            "target": plan.service_target(service), "on_region_failure": plan.deploy.on_region_failure,
            **scope(group, steps.declared(steps.SERVICE_STEPS, plan)),
        }  # fmt: skip
    return record


def canary_key(service: str, region: str) -> str:
    """A service's entry in the record's "canaries"."""
    return f"{service}/{region}"


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
