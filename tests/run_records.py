"""Run records for the history and report tests (shaped like ``dbopt.run_record.collect``'s output).

``measured_record`` runs the weekly chain on a real SQLite file with the pipeline functions the DAG
tasks call: an application workload logged to the query log, extraction, the advisor, benchmarks
before/after, online index builds, EXPLAIN verification, the statistical judgement and the revert.
The health gate and the canary have no SQLite source: their parts are built from the metrics
package's own result types, in the shape the DAG returns.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

from dbopt import pipeline
from dbopt.metrics.health_gate import GateFigure, GateResult
from dbopt.metrics.rules import CheckResult, RuleResult
from dbopt.plan import Plan
from dbopt.targets import open_target
from dbopt.targets.querylog import QueryLog, timed_execute

ROWS = 20_000

PLAN = Plan.model_validate(
    {
        "id": "orders",
        "owner": "dba@example.com",
        "targets": [{"name": "shop", "conn_id": "shop_sqlite", "dialect": "sqlite"}],
        "workload": {"source": "querylog", "min_calls": 2},
        "indexes": {"min_table_rows": 1000, "explicit": [{"table": "orders", "columns": ["amount"]}]},
        "benchmark": {"from_workload": 3, "iterations": 6, "warmup": 2},
        "report": {"recipients": ["dba@example.com"]},
    }
)


def as_xcom(value: Any) -> Any:
    """What a task's return value looks like after XCom (JSON: tuples become lists)."""
    return json.loads(json.dumps(value))


def _app_workload(db: Path) -> None:
    """The application: a table and the statements it runs, timed into the query log."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INT, status TEXT, amount REAL)")
    conn.execute(
        "INSERT INTO orders WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) "
        "SELECT i, i % 2000, CASE WHEN i % 3 THEN 'open' ELSE 'closed' END, (i * 7919) % 10000 / 100.0 FROM seq",
        [ROWS],
    )
    conn.commit()
    log = QueryLog(f"{db}.queries.jsonl")
    for c in (17, 1234, 999, 42, 7):
        timed_execute(conn, log, "SELECT id, amount FROM orders WHERE customer_id = ?", [c])
    for _ in range(3):
        timed_execute(conn, log, "SELECT count(*) FROM orders WHERE status = ?", ["closed"])
    conn.close()


def _gate() -> dict[str, Any]:
    figures = (
        GateFigure("error_rate > 0.005", "error_rate", "service", ">", 0.005, None, 0.0012, 0.005, "pass",
                   "0.0012 ≤ 0.005 over 300 s (Prometheus)", 30, 18250.0),
        GateFigure("p95_ms > 50", "p95_ms", "service", ">", 50.0, None, 31.4, 50.0, "pass",
                   "31.4 ≤ 50 over 300 s (Prometheus)", 30, 18250.0),
    )  # fmt: skip
    per_target = GateResult("GO", "all 2 figures pass", 1_767_600_000.0, figures).to_dict()
    return {"decision": "GO", "reason": "all figures pass", "targets": {"shop": per_target}}  # pipeline.gate_decision


def _canary() -> dict[str, Any]:
    rules = (
        RuleResult("error_rate > 0.01", "canary error rate", "pass", "0.002 ≤ 0.01 for 300 s", 0.002, 0.01, 10, 10,
                   4200.0),
        RuleResult("p95_ms > 100", "canary p95 latency", "pass", "38 ≤ 100", 38.0, 100.0, 10, 10, 4200.0),
    )  # fmt: skip
    evidence = CheckResult(1_767_601_800.0, "pass", rules)
    return {"decision": "promote", "reason": "3 passing checks in a row (required_passes 3)",
            "started_at": 1_767_600_000.0, "decided_at": 1_767_601_800.0, "checks": 3, "failures": 0,
            "inconclusives": 0, "passes_in_row": 3, "errors_in_row": 0, "history": [evidence.summary()],
            "evidence": evidence.to_dict()}  # fmt: skip


def measured_record(tmp_path: Path, run_id: str = "manual__2026-11-23T09:00:00+09:00") -> dict[str, Any]:
    db = tmp_path / "shop.db"
    _app_workload(db)
    with open_target(f"sqlite:///{db}") as target:
        workload = pipeline.extract_workload(PLAN, target)
        advice = pipeline.advise(PLAN, target, workload)
        queries = pipeline.bench_queries(PLAN, workload, target.dialect)
        advice["queries"] = queries  # the advise task returns them too
        before = pipeline.benchmark(PLAN, target, queries)
        created = [pipeline.create_index(PLAN, target, s, False) for s in advice["create"]]
        verification = pipeline.verify_plans(target, [{"name": c["index"]} for c in created], queries)
        verification["sizes"] = {
            ix.name: ix.size_bytes for ix in target.indexes() if ix.name in verification["used_by"]
        }
        after = pipeline.benchmark(PLAN, target, queries)
        judge = pipeline.keep_or_revert(PLAN, created, verification, before, after)
        reverted = pipeline.revert_indexes(PLAN, target, advice, judge, False)
    return as_xcom(
        {
            "plan": PLAN.id,
            "dag_id": PLAN.dag_id,
            "run_id": run_id,
            "params": {"dry_run": False, "skip_deploy": False},
            "started": "2026-11-23 00:00:05+00:00",
            "tasks": {
                "health_check": _gate(),
                "deploy_canary": {"service": "api", "new_revision": "api-00042"},
                "monitor_canary": _canary(),
                "promote": {"service": "api", "traffic": [{"percent": 100}]},
                "rollback": None,
            },
            "targets": {
                "shop": {
                    "dialect": "sqlite",
                    "conn_id": "shop_sqlite",
                    "extract": workload,
                    "advise": advice,
                    "backup": {"kind": "sqlite_file", "path": str(tmp_path / "backup.db"), "verified": True},
                    "bench_before": before,
                    "create_index": created,
                    "verify": verification | {"created": created},
                    "bench_after": after,
                    "judge": judge,
                    "revert_indexes": reverted,
                },
            },
        }
    )


def no_go_record(run_id: str = "scheduled__2026-11-24T00:00:00+00:00") -> dict[str, Any]:
    figure = GateFigure("p95_ms > 50", "p95_ms", "service", ">", 50.0, None, 73.9, 50.0, "fail",
                        "73.9 > 50 over 300 s (Prometheus)", 30, 15000.0)  # fmt: skip
    per_target = GateResult("NO-GO", "failing: p95_ms > 50", 1_767_600_000.0, (figure,)).to_dict()
    gate = {"decision": "NO-GO", "reason": "shop: failing: p95_ms > 50", "targets": {"shop": per_target}}
    return as_xcom({"plan": PLAN.id, "dag_id": PLAN.dag_id, "run_id": run_id, "params": {}, "started": "",
                    "tasks": {"health_check": gate},
                    "targets": {"shop": {"dialect": "sqlite", "conn_id": "shop_sqlite"}}})  # fmt: skip


def failed_build_record(full: dict[str, Any]) -> dict[str, Any]:
    """The measured record as if the index build had failed: no verify, no benchmark after, no judge."""
    record = copy.deepcopy(full)
    shop = record["targets"]["shop"]
    shop["create_index"] = [c | {"status": "failed", "error": "database is locked"} for c in shop["create_index"]]
    for step in ("verify", "bench_after", "judge", "revert_indexes"):
        shop[step] = None
    for step in ("deploy_canary", "monitor_canary", "promote"):
        record["tasks"][step] = None
    return record


def dry_run_record(full: dict[str, Any]) -> dict[str, Any]:
    record = copy.deepcopy(full)
    record["params"]["dry_run"] = True
    shop = record["targets"]["shop"]
    shop["create_index"] = [{"action": "create", "table": c["table"], "index": c["index"], "status": "dry_run",
                             "statement": c["statement"]} for c in shop["create_index"]]  # fmt: skip
    shop["backup"] = {"kind": "none", "detail": "dry run: no backup taken", "verified": False}
    return record
