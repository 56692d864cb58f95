"""How long Airflow takes to parse dags/dbopt_weekly.py with N plans present (default 20).

Each measurement runs in a fresh Python process (as Airflow's dag-processor parses a file), with
airflow already imported, timing what `airflow dags report` reports: loading the file into a DagBag.
Also times the worker path, where get_parsing_context() names one DAG and only that one is built.

    .venv/bin/python bench/dag_parse.py [--plans 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEEKLY = ROOT / "dags" / "dbopt_weekly.py"

PROBE = """
import json, os, sys, time
import airflow.sdk  # noqa: F401  (the processor has airflow imported already)
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "dags": len(bag.dags), "errors": len(bag.import_errors)}))
"""


def make_plans(directory: Path, n: int) -> None:
    template = (ROOT / "include" / "plans" / "week17.yaml").read_text()
    for i in range(n):
        plan_id = f"week{i + 1:02d}"
        (directory / f"{plan_id}.yaml").write_text(template.replace("id: week17", f"id: {plan_id}"))


def parse_once(plans: Path, worker_dag: str | None) -> dict[str, float]:
    env = dict(os.environ, DBOPT_PLANS_DIR=str(plans), PYTHONPATH=f"{ROOT / 'plugins'}:{ROOT}")
    env.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
    if worker_dag:  # what a worker sees when it runs one task of this DAG
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = worker_dag
    out = subprocess.run([sys.executable, "-c", PROBE, str(WEEKLY)], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plans", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plans = Path(tmp)
        make_plans(plans, args.plans)
        for label, worker in (("dag-processor (all plans)", None), ("worker (one DAG)", "dbopt_week01")):
            runs = [parse_once(plans, worker) for _ in range(args.repeat)]
            secs = [r["seconds"] for r in runs]
            summary = f"{args.plans} plans → {runs[0]['dags']} DAGs, import errors {runs[0]['errors']}"
            timing = f"parse median {statistics.median(secs):.3f} s, max {max(secs):.3f} s over {args.repeat} runs"
            print(f"{label}: {summary}; {timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
