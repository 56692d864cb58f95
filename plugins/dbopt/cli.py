"""``dbopt`` command line: the same pipeline the Airflow tasks run, on a database URL.

dbopt advise URL            recommendations (table or --json)
dbopt bench URL --queries F measure queries (YAML/JSON list of {name, sql} or a .sql file)
dbopt apply URL             the weekly steps (dbopt.steps) in order: health gate → extract → advise →
                            backup → bench → build online → verify → bench → keep or revert → drop
                            unused (plan allow_drops); the Cloud Run canary steps are Airflow-only
dbopt validate PLAN...      check plan files

Exit status: 0 done, 1 an index build or drop failed or was refused, 2 bad input or connection,
3 the health gate said NO-GO (nothing was changed).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import yaml

from dbopt import pipeline, replay_safety, steps
from dbopt.plan import Plan, PlanError, TargetSpec, load_plan
from dbopt.results import Advice
from dbopt.targets import TargetError, dialect_of, open_target
from dbopt.targets.base import Target
from dbopt.tasklog import terminal_bar

NO_GO = 3
CHANGE_FAILED = 1


def _plan_for(args: argparse.Namespace) -> Plan:
    """The plan file if given, else a plan built from the command-line options."""
    if getattr(args, "plan", None):
        return load_plan(args.plan)
    data: dict[str, Any] = {
        "id": "cli",
        "targets": [{"conn_id": "cli", "dialect": dialect_of(args.url)}],
        "workload": {"min_calls": args.min_calls, "min_mean_ms": args.min_mean_ms, "top_n": args.top},
        "indexes": {"storage_budget_mb": args.budget_mb, "min_table_rows": args.min_table_rows},
    }
    if args.log:
        data["workload"] |= {"source": "slowlog" if data["targets"][0]["dialect"] == "mysql" else "querylog",
                             "path": args.log}  # fmt: skip
    if getattr(args, "iterations", None):
        data["benchmark"] = {"iterations": args.iterations, "warmup": args.warmup}
    return Plan.model_validate(data)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([line, "  ".join("-" * widths[c] for c in columns), *body])


def _target_spec(plan: Plan, args: argparse.Namespace) -> TargetSpec:
    """The plan target the URL stands for: ``--target`` by name, else the first of the URL's dialect."""
    dialect = dialect_of(args.url)
    wanted = getattr(args, "target", None)
    for spec in plan.targets:
        if wanted and spec.name != wanted:
            continue
        if spec.dialect != dialect:
            if wanted:
                raise ValueError(f"--target {wanted}: the plan's target is {spec.dialect}, the URL is {dialect}")
            continue
        return spec
    names = ", ".join(f"{t.name} ({t.dialect})" for t in plan.targets)
    asked = f"--target {wanted}" if wanted else dialect
    raise ValueError(f"no target of the plan matches {asked}: the plan's targets are {names}")


def cmd_advise(args: argparse.Namespace) -> int:
    plan = _plan_for(args)
    spec = _target_spec(plan, args)
    with open_target(args.url) as target:
        workload = pipeline.extract_workload(plan, spec, target)
        advice = pipeline.advise(plan, target, workload)
    if args.json:
        print(json.dumps(advice.to_dict(), indent=2, default=str))
        return 0
    print(f"workload: {len(workload.statements)} statements")
    rows = [
        {"table": r["table"], "columns": ", ".join(r["columns"]), "size": _bytes(r["estimated_size_bytes"]),
         "cost before→after": f"{r['cost_before']:.1f}→{r['cost_after']:.1f} ({r['method']})",
         "queries": len(r["queries"]), "reason": r["reason"]}
        for r in advice.recommendations
    ]  # fmt: skip
    if rows:
        print(_table(rows, ["table", "columns", "size", "cost before→after", "queries", "reason"]))
    _print_no_index(advice)
    for d in advice.drop_candidates:
        print(f"drop candidate: {d['table']}.{d['index']}: {d['reason']}")
    for ddl in advice.ddl.values():
        print(ddl + ";")
    return 0


def _print_no_index(advice: Advice) -> None:
    """Every statement without an index, with its reason; and where each table's write cost came from."""
    skipped = advice.skipped
    if not advice.recommendations:
        empty = "the workload is empty (nothing measured, or all filtered)"
        each = f"{len(skipped)} statement(s) without an index, each with its reason below"
        print(f"no index recommended: {each if skipped else empty}")
    if skipped:
        print("\nstatements without an index:")
        rows = [{"statement": s["digest"], "why": s.get("code", ""), "query": s["query"][:60], "reason": s["reason"]}
                for s in skipped]  # fmt: skip
        print(_table(rows, ["statement", "why", "query", "reason"]))
    for w in advice.write_costs:
        print(f"write cost {w['table']}: {w['ms']:.0f} ms ({w['source']})")


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _read_queries(path: Path, dialect: str) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".sql":
        try:  # cut at top-level ';' only: never inside a string, a comment or a $$ body
            parts = replay_safety.split_queries(text, dialect)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return [{"name": f"q{i + 1}", "sql": [q]} for i, q in enumerate(parts)]
    items = yaml.safe_load(text)
    if not isinstance(items, list) or not all(isinstance(i, dict) and "sql" in i for i in items):
        raise ValueError(f"{path}: expected a list of {{name, sql}} entries (sql: a string or a list of variants)")
    return [{"name": i.get("name", f"q{n + 1}"), "sql": i["sql"] if isinstance(i["sql"], list) else [i["sql"]]}
            for n, i in enumerate(items)]  # fmt: skip


def cmd_bench(args: argparse.Namespace) -> int:
    plan = _plan_for(args)
    dialect = dialect_of(args.url)
    queries = replay_safety.screen(_read_queries(Path(args.queries), dialect), dialect, plan.benchmark.safe_functions)
    if refused := replay_safety.refused(queries):
        # nothing runs, not even the acceptable queries: the file is not what the user thinks it is
        for r in refused:
            print(f"dbopt: {args.queries}: query {r['name']} refused: {r['reason']}: {' | '.join(r['sql'])[:200]}",
                  file=sys.stderr)  # fmt: skip
        print(f"dbopt: nothing measured: {len(refused)} of {len(queries)} queries cannot be replayed safely "
              "(dbopt replays one read-only SELECT per query)", file=sys.stderr)  # fmt: skip
        return 1
    with open_target(args.url) as target:
        result = pipeline.benchmark(plan, target, queries, progress=terminal_bar("benchmark", sys.stderr))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    stats = ("mean", "median", "p95", "p99")
    rows = [{"query": q["name"], **{k: f"{q['summary'][f'{k}_ms']:.3f}" for k in stats}, "n": q["summary"]["n"]}
            for q in result["queries"]]  # fmt: skip
    print(_table(rows, ["query", "mean", "median", "p95", "p99", "n"]))
    print(f"method: {result.get('method', '')} (milliseconds)")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Exit 0 only when every build and drop did what was asked and nothing was left behind."""
    from dbopt.runlock import cli_holder, hold_target

    plan = _plan_for(args)
    spec = _target_spec(plan, args)
    with (
        open_target(args.url) as target,
        hold_target(target, cli_holder(plan.id), plan.run, release_lease=True),
        ExitStack() as stack,
    ):
        bench = stack.enter_context(open_target(args.bench_url)) if args.bench_url else None
        record = apply(plan, spec, target, dry_run=args.dry_run, reports_dir=Path(args.reports_dir), bench=bench)
    print(json.dumps(record, indent=2, default=str) if args.json else _apply_text(record))
    if record["tasks"]["health_check"]["decision"] != "GO":
        return NO_GO
    problems = []
    for data in record["targets"].values():
        results = steps.load(steps.TARGET_STEPS, data)
        problems += pipeline.run_problems([c for _, c in _changes(data)], results["advise"])
    for problem in problems:
        print(f"dbopt: {problem}", file=sys.stderr)
    return CHANGE_FAILED if problems else 0


def apply(
    plan: Plan, spec: TargetSpec, target: Target, *, dry_run: bool, reports_dir: Path, bench: Target | None = None
) -> dict[str, Any]:
    """The weekly steps on one database without Airflow, in their declared order: the run record's
    shape (``dbopt.run_record``), with every step that did not run and why. ``bench``: the same
    database as a read-only user, for the benchmark replays (default ``target``)."""
    one = plan.model_copy(update={"targets": [spec]})  # the gate checks the database the URL names
    gate = steps.ScopeRun()
    ctx = steps.StepContext(one, dry_run, gate.results, open_target=lambda _spec: nullcontext(target))
    for step in steps.declared(steps.RUN_STEPS, one):
        gate.results[step.name] = step.execute(ctx)
    record: dict[str, Any] = {"plan": plan.id, "params": {"dry_run": dry_run},
                              "tasks": gate.record(steps.RUN_STEPS), "targets": {}, "canaries": {}}  # fmt: skip
    if gate.results["health_check"].decision == "GO":
        progress = lambda what: terminal_bar(what, sys.stderr)  # noqa: E731
        run = steps.run_target(
            one, spec, target, dry_run=dry_run, reports_dir=reports_dir, bench_target=bench, progress=progress
        )
        declared = steps.declared(steps.TARGET_STEPS, one, spec)
        record["targets"][spec.name] = {"dialect": spec.dialect, **run.record(declared)}
    why = steps.AIRFLOW_ONLY if plan.deploy.enabled else "the plan does not deploy (deploy.enabled: false)"
    for service in plan.deploy.services:
        record["canaries"][f"{service.name}/{service.region}"] = {
            "service": service.name, "skipped": {s.name: why for s in steps.declared(steps.SERVICE_STEPS, plan)}
        }  # fmt: skip
    return record


def _changes(data: dict[str, Any]) -> list[tuple[steps.Step, Any]]:
    return list(steps.index_changes(steps.TARGET_STEPS, steps.load(steps.TARGET_STEPS, data)))


def _apply_text(record: dict[str, Any]) -> str:
    gate = record["tasks"]["health_check"]
    lines = [f"health gate: {gate['decision']} ({gate['reason']})"]
    for name, data in record["targets"].items():
        r = steps.load(steps.TARGET_STEPS, data)
        lines.append(f"target {name}:")
        if r["extract"] is not None:
            lines.append(f"  workload statements: {len(r['extract'].statements)}")
        if (advice := r["advise"]) is not None:
            lines.append(f"  indexes to build: {len(advice.create)}")
            if advice.not_built_reason:
                lines.append(f"  not built: {advice.not_built_reason}")
            lines += [f"  not replayed {q['name']}: {q['refused']}" for q in advice.queries if q.get("refused")]
            lines += [f"  foreign {f['table']}.{f['index']}: {f['reason']}" for f in advice.foreign]
            lines += [f"  refused {f['index']}: {f['reason']}" for f in advice.refused]
        if r["judge"] is not None:
            lines += [f"  {'KEEP  ' if d.keep else 'REVERT'} {d.index}: {d.reason}" for d in r["judge"].indexes]
        for step, c in _changes(data):
            lines.append(f"  {step.name}: {c.action} {c.index}: {c.status}{' — ' + c.error if c.error else ''}")
            lines += ["    an INVALID leftover was dropped in this run"] if c.extra.get("invalid_cleaned") else []
        lines += [f"  skipped {s}: {why}" for s, why in data["skipped"].items()]
    for key, data in record["canaries"].items():
        lines += [f"canary {key}: skipped {s}: {why}" for s, why in data["skipped"].items()]
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for f in args.plans:
        try:
            plan = load_plan(f)
            print(f"{f}: ok ({plan.dag_id})")
        except PlanError as err:
            print(err, file=sys.stderr)
            bad += 1
    return 1 if bad else 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="SQLAlchemy URL: postgresql://…, mysql://…, sqlite:////path.db")
    p.add_argument("--plan", help="take settings from this plan file instead of the options below")
    p.add_argument("--log", help="slow log (MySQL) or query log (SQLite) to read the workload from")
    p.add_argument("--top", type=int, default=50, help="top N statements by total time (default 50)")
    p.add_argument("--min-calls", type=int, default=1)
    p.add_argument("--min-mean-ms", type=float, default=0.0)
    p.add_argument("--budget-mb", type=float, default=1024, help="storage budget for new indexes")
    p.add_argument("--min-table-rows", type=int, default=10000, help="tables smaller than this get no index")
    p.add_argument("--target", help="with --plan: the plan target the URL is (default: the first of its dialect)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dbopt", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    a = sub.add_parser("advise", help="recommend indexes for the workload")
    _common(a)
    a.set_defaults(func=cmd_advise)
    b = sub.add_parser("bench", help="measure queries")
    _common(b)
    b.add_argument("--queries", required=True, help="YAML/JSON list of {name, sql} or a .sql file")
    b.add_argument("--iterations", type=int, default=30)
    b.add_argument("--warmup", type=int, default=3)
    b.set_defaults(func=cmd_bench)
    c = sub.add_parser("apply", help="build advised indexes online, verify, measure, revert what did not help")
    _common(c)
    c.add_argument("--iterations", type=int, default=30)
    c.add_argument("--warmup", type=int, default=3)
    c.add_argument("--dry-run", action="store_true", help="compute and report, change nothing")
    c.add_argument("--reports-dir", default="reports", help="where the backup goes (default ./reports)")
    c.add_argument("--bench-url", help="the same database as a SELECT-only user: benchmark replays run as that user")
    c.set_defaults(func=cmd_apply)
    v = sub.add_parser("validate", help="validate plan files")
    v.add_argument("plans", nargs="+")
    v.set_defaults(func=cmd_validate)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (TargetError, PlanError, ValueError, OSError) as err:
        print(f"dbopt: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
