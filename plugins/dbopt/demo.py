"""``make demo``: the demo plan end to end on the embedded SQLite target, through Airflow.

1. builds ``var/demo/worklogs.db`` (seed 003's worklogs schema, deterministic data) and replays the
   demo workload into its query log — the slow statements dbopt will find;
2. runs ``airflow dags test dbopt_demo`` with the connection ``dbopt_demo`` pointing at that file;
3. prints what the run did and the path of its report.

Environment: DBOPT_DEMO_SCALE (default 0.5: ~100k worklogs), DBOPT_DEMO_STATEMENTS (default 600),
DBOPT_DEMO_DIR (default var/demo), DBOPT_REPORTS_DIR (default reports/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = Path(os.environ.get("DBOPT_DEMO_DIR") or ROOT / "var" / "demo")
REPORTS_DIR = Path(os.environ.get("DBOPT_REPORTS_DIR") or ROOT / "reports")
DAG_ID = "dbopt_demo"


def prepare(db: Path, scale: float, statements: int) -> dict[str, object]:
    """A fresh demo database and query log (the same every time: data and workload are seeded)."""
    from dbopt.demo_data import generate_sqlite, replay

    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in db.parent.glob(db.name + "*"):
        stale.unlink()
    generated = generate_sqlite(db, scale=scale)
    stats = replay(f"sqlite:///{db}", statements=statements, scale=scale)
    return {"rows": generated.to_dict().get("rows"), "replayed": stats.statements, "query_log": stats.query_log}


def run_dag(db: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["AIRFLOW_CONN_DBOPT_DEMO"] = json.dumps({"conn_type": "sqlite", "host": str(db)})
    env["DBOPT_REPORTS_DIR"] = str(REPORTS_DIR)
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(airflow), "dags", "test", DAG_ID], env=env, text=True, capture_output=True)


def newest_report(since: float) -> Path | None:
    runs = [p for p in (REPORTS_DIR / "demo").glob("*/run.json") if p.stat().st_mtime >= since]
    return max(runs, key=lambda p: p.stat().st_mtime, default=None)


def summary(record_path: Path) -> list[str]:
    from dbopt.history import facts

    record = json.loads(record_path.read_text())
    gate = facts.gate(record)
    lines = [f"health gate: {gate.decision} — {gate.reason}" if gate else "health gate: not run"]
    for name, data in facts.targets(record):
        r = facts.results(data)
        workload, advice, judge = r["extract"], r["advise"], r["judge"]
        lines.append(
            f"[{name}] workload: {len(workload.statements) if workload else 0} statements; "
            f"to build: {len(advice.create) if advice else 0}"
        )
        lines += [f"  build {c.index}: {c.status}" for c in r["create_index"] or ()]
        verdicts = judge.indexes if judge else ()
        lines += [f"  {'KEEP  ' if d.keep else 'REVERT'} {d.index}: {d.reason}" for d in verdicts]
    return lines


def main() -> int:
    scale = float(os.environ.get("DBOPT_DEMO_SCALE", "0.5"))
    statements = int(os.environ.get("DBOPT_DEMO_STATEMENTS", "600"))
    db = DEMO_DIR / "worklogs.db"
    started = time.time()
    print(f"dbopt demo: building {db} (scale {scale}) and replaying {statements} statements …", flush=True)
    prepared = prepare(db, scale, statements)
    print(f"dbopt demo: {prepared}", flush=True)
    print(f"dbopt demo: airflow dags test {DAG_ID} …", flush=True)
    result = run_dag(db)
    (DEMO_DIR / "airflow-dags-test.log").write_text(result.stdout + result.stderr)
    report = newest_report(started)
    if result.returncode != 0 or report is None:
        print(result.stdout[-4000:] + result.stderr[-4000:], file=sys.stderr)
        print(f"dbopt demo: the DAG run failed (exit {result.returncode}); full log: "
              f"{DEMO_DIR / 'airflow-dags-test.log'}", file=sys.stderr)  # fmt: skip
        return 1
    for line in summary(report):
        print(line)
    html = report.with_name("report.html")
    print(f"dbopt demo: report: {html if html.exists() else report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
