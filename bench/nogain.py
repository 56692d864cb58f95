"""The "no gain" check: an index forced through a plan, measured, judged, and reverted when useless.

A plan names an explicit index on ``sessions.status`` (95% of rows are 'active'; the advisor
refuses it as a trap) with automatic advice off, and the trap query as its benchmark. ``dbopt apply``
(``dbopt.cli.apply``: the DAG's pipeline functions without Airflow) builds it online, checks which
benchmark queries use it (EXPLAIN after the build), measures before and after, and drops it when no
query it serves got measurably faster.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dbopt.cli import apply
from dbopt.plan import Plan
from dbopt.targets.base import Target

TRAP_TABLE, TRAP_COLUMN, TRAP_QUERY = "sessions", "status", "active_sessions"


def forced_index_plan(dialect: str, variants: list[str], iterations: int) -> Plan:
    return Plan.model_validate(
        {
            "id": "bench_no_gain",
            "targets": [{"conn_id": "bench", "dialect": dialect}],
            "indexes": {"auto_advice": False, "explicit": [{"table": TRAP_TABLE, "columns": [TRAP_COLUMN]}]},
            "benchmark": {"queries": [{"name": TRAP_QUERY, "sql": variants}], "iterations": iterations},
        }
    )


def run_forced_index(target: Target, variants: list[str], iterations: int = 100) -> dict[str, Any]:
    """``dbopt apply`` of the forced-index plan: what it built, its decision, what it reverted."""
    plan = forced_index_plan(target.dialect, variants, iterations)
    with tempfile.TemporaryDirectory() as reports:  # the backup apply takes before a build
        record = apply(plan, plan.targets[0], target, dry_run=False, reports_dir=Path(reports))
    (steps,) = record["targets"].values()
    left = [ix.name for ix in target.indexes([TRAP_TABLE]) if TRAP_COLUMN in ix.columns]
    reverted = (steps.get("revert_indexes") or {}).get("indexes", [])
    return {"created": steps["create_index"] or [], "decision": steps["judge"], "reverted": reverted,
            "index_left_after_run": left}  # fmt: skip
