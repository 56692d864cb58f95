"""Do keep/revert verdicts survive an A/A test? (issue 13; numbers in bench/README.md)

Per engine, on the demo data at ``--scale`` with every demo read query (traps included, 5 concrete
value sets each) as the plan's benchmark, ``--runs`` times each of:

* **A/A**: a dry run of a plan with one explicit index (``dbopt apply --dry-run``: the DAG's pipeline
  functions without Airflow). Nothing is built, so before and after measure the same database; every
  query verdict that is not "no_change" is a false alarm.
* **useful**: the same plan for real, the index serving a query it speeds up many times: must be kept.
* **useless**: a plan whose index a query uses without gaining from it (a trap column where 95% of
  rows share a value): must be reverted.

The database is left as it was between runs (a kept index is dropped again). For contrast, every A/A
run is also judged the old way (before phase against after phase, no A/A drift): ``old rule``.

    .venv/bin/python bench/aa.py --runs 20 --scale 0.05            # all engines
    .venv/bin/python bench/aa.py --runs 3 --only sqlite             # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Run as a script (`python bench/aa.py`): make the repository root importable for `bench.*`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engines import ENGINES, ROOT
from dbopt.bench.stats import compare_samples
from dbopt.cli import apply
from dbopt.demo_data import concrete_queries, generate
from dbopt.plan import Plan
from dbopt.targets import open_target
from dbopt.targets.base import Target

DATABASE = "dbopt_aa"  # not engines.DATABASE: bench/run.py may run at the same time
# (table, columns) per dialect family
USEFUL = {
    "server": ("sessions", ["session_id"]),  # session_lookup: a full scan becomes a one-row lookup
    # user_worklogs_range: a lookup; monthly_hours: a covering scan (a narrower key alone slows it down)
    "sqlite": ("worklogs", ["author_email", "company_id", "started", "time_spent_seconds"]),
}
# active_sessions: 95% of sessions are 'active'; instance_sync_range: 3 instances, the planner uses it anyway
USELESS = {"server": ("sessions", ["status"]), "sqlite": ("worklogs", ["jira_instance"])}


def plan_for(dialect: str, index: tuple[str, list[str]], queries: dict[str, list[str]], iterations: int) -> Plan:
    table, columns = index
    return Plan.model_validate(
        {
            "id": "bench_aa",
            "targets": [{"conn_id": "bench", "dialect": dialect}],
            "indexes": {"auto_advice": False, "explicit": [{"table": table, "columns": columns}]},
            "benchmark": {"queries": [{"name": n, "sql": v} for n, v in queries.items()], "iterations": iterations},
        }
    )


def old_rule(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Verdicts the same statistics give when the before and after phases are compared, no A/A drift."""
    samples = {q["name"]: q["samples"] for q in before["queries"]}
    return [compare_samples(samples[q["name"]], q["samples"]).verdict for q in after["queries"]]


def one_run(target: Target, plan: Plan, dry_run: bool) -> dict[str, Any]:
    """``dbopt apply``, keeping the measured arms for the old-rule contrast; the database restored."""
    from dbopt import pipeline

    captured: list[dict[str, Any]] = []
    real = pipeline.benchmark

    def recording(*args: Any, **kwargs: Any) -> dict[str, Any]:
        captured.append(real(*args, **kwargs))
        return captured[-1]

    pipeline.benchmark = recording  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as reports:  # the backup apply takes before a build
            record = apply(plan, plan.targets[0], target, dry_run=dry_run, reports_dir=Path(reports))
    finally:
        pipeline.benchmark = real  # type: ignore[assignment]
    (summary,) = record["targets"].values()
    for d in summary["judge"]["indexes"]:
        if d["keep"]:
            target.drop_index(d["table"], d["index"])
    comparison = summary["judge"]["comparison"] or {"queries": [], "design": None}
    before, after = captured
    return {
        "design": comparison["design"],
        "decisions": [(d["index"], d["keep"], d["reason"]) for d in summary["judge"]["indexes"]],
        "verdicts": [q["result"]["verdict"] for q in comparison["queries"]],
        "drift": [round(q["result"]["drift"], 3) for q in comparison["queries"]],
        # why each false alarm (or effect) was called: the medians, CI, p and drift it had to exceed
        "alarms": {
            q["name"]: q["result"]["reason"] for q in comparison["queries"] if q["result"]["verdict"] != "no_change"
        },
        "warmup": [w for q in (before, after) for w in q.get("warmup_state", {}).values()],
        "old_rule": old_rule(before, after),
        "hiding": after.get("hiding") or after.get("interleave_refused"),
    }


MODES = {"aa": (USEFUL, True), "useful": (USEFUL, False), "useless": (USELESS, False)}


def run_engine(name: str, runs: int, scale: float, iterations: int, modes: list[str], database: str) -> dict[str, Any]:
    engine = ENGINES[name]
    url = engine.fresh(database)
    try:
        generate(url, scale=scale)
        family = "sqlite" if engine.dialect == "sqlite" else "server"
        queries = concrete_queries(None, 5, dialect=engine.dialect, scale=scale, include_writes=False)
        out: dict[str, Any] = {}
        with open_target(url) as target:
            if engine.dialect == "postgres":
                target.execute("VACUUM ANALYZE")
            for mode in modes:
                index, dry = MODES[mode]
                plan = plan_for(engine.dialect, index[family], queries, iterations)
                started = time.monotonic()
                out[mode] = [one_run(target, plan, dry) for _ in range(runs)]
                out[mode + "_s"] = round(time.monotonic() - started, 1)
                print(f"{name} {mode}: {summarize(mode, out[mode])} ({out[mode + '_s']} s)", flush=True)
        return out
    finally:
        engine.drop(database)


def summarize(mode: str, runs: list[dict[str, Any]]) -> str:
    verdicts = Counter(v for r in runs for v in r["verdicts"])
    old = Counter(v for r in runs for v in r["old_rule"])
    kept = sum(1 for r in runs for _, keep, _ in r["decisions"] if keep)
    decisions = sum(len(r["decisions"]) for r in runs)
    warm = [w for r in runs for w in r["warmup"]]
    stable = sum(1 for w in warm if w["stable"])
    runs_taken = sorted(w["runs"] for w in warm)
    median_runs = runs_taken[len(runs_taken) // 2] if runs_taken else 0
    drift = sorted(d for r in runs for d in r["drift"])
    p90 = drift[int(0.9 * (len(drift) - 1))] if drift else 0.0
    return (
        f"design {runs[0]['design']}; verdicts {dict(verdicts)}; old rule {dict(old)}; kept {kept}/{decisions}; "
        f"warm-up stable {stable}/{len(warm)} (median {median_runs} runs); A/A drift p90 {p90:.1%}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--iterations", type=int, default=30, help="the plan's benchmark.iterations")
    ap.add_argument("--only", action="append", choices=sorted(ENGINES), help="engine (repeatable; default all)")
    ap.add_argument("--mode", action="append", choices=list(MODES), help="repeatable; default all three")
    ap.add_argument("--database", default=DATABASE, help="name of the scratch database (runs in parallel)")
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "aa.json", help="raw results (JSON)")
    args = ap.parse_args()
    modes = args.mode or list(MODES)
    results = {
        name: run_engine(name, args.runs, args.scale, args.iterations, modes, args.database)
        for name in args.only or ENGINES
    }
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    ok = True
    for name, r in results.items():
        alarms = sum(v in ("drift", "improved", "regressed") for run in r.get("aa", []) for v in run["verdicts"])
        useful = all(keep for run in r.get("useful", []) for _, keep, _ in run["decisions"])
        useless = not any(keep for run in r.get("useless", []) for _, keep, _ in run["decisions"])
        ok &= alarms <= 1 and useful and useless
        print(f"{name}: A/A false alarms {alarms} (≤ 1: {alarms <= 1}); useful kept every time: {useful}; "
              f"useless reverted every time: {useless}")  # fmt: skip
    print(f"raw results: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
