"""The "no gain" check: an index forced through a plan, measured, judged, and reverted when useless.

A plan names an explicit index on ``sessions.status`` (95% of rows are 'active'; the advisor
refuses it as a trap) with automatic advice off, and the trap query as its benchmark. ``dbopt apply``
(``dbopt.cli.apply``: the DAG's pipeline functions without Airflow) builds it online, checks which
benchmark queries use it (EXPLAIN after the build), measures before and after, and drops it when no
query it serves got measurably faster.
"""

from __future__ import annotations

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
    """``dbopt apply`` of the forced-index plan; its summary (advice, build, verdicts, reverts)."""
    plan = forced_index_plan(target.dialect, variants, iterations)
    summary = apply(plan, target, dry_run=False)
    left = [ix.name for ix in target.indexes([TRAP_TABLE]) if TRAP_COLUMN in ix.columns]
    return {**summary, "index_left_after_run": left}
