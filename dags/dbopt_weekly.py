"""One weekly optimization DAG per plan file in include/plans/ (or $DBOPT_PLANS_DIR).

Parsing only reads the YAML files: no database or network call happens here. A worker running one
task builds only its own DAG (get_parsing_context); an invalid plan, or any error while building its
DAG, becomes a DAG showing that error, and the other plans are unaffected.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import get_parsing_context

from dbopt.plan import PlanError, iter_plans
from dbopt.weekly_dag import build_broken_dag, build_dag

REPORTS_DIR = Path(os.environ.get("DBOPT_REPORTS_DIR") or Path(__file__).resolve().parents[1] / "reports")
wanted = get_parsing_context().dag_id  # set on a worker: build only that DAG, read only its plan
only = wanted.removeprefix("dbopt_") if wanted and wanted.startswith("dbopt_") else None

for path, plan in iter_plans(only_id=only):
    if wanted and only is None:
        break  # a worker running another file's DAG
    try:
        dag = build_broken_dag(path, plan) if isinstance(plan, PlanError) else build_dag(plan, path, REPORTS_DIR)
    except Exception as err:
        dag = build_broken_dag(path, err)
    globals()[dag.dag_id] = dag  # the DAGs are published here, whole (built with auto_register=False)
