"""The per-run report: HTML (file and e-mail) and Markdown (for the task log) from one run record.

Works on any partial record (NO-GO, failed build, dry run, no deploy): a part that did not run is
said to be missing, never filled in. Each figure carries the method that produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dbopt import steps
from dbopt.history import facts
from dbopt.report.charts import latency_chart, trend_chart
from dbopt.report.mail import HtmlEmail, content_id
from dbopt.report.render import data_uri, render, scaling_rows
from dbopt.results import Gate

FIGURE_KEYS = ("target", "rule", "metric", "scope", "value", "op", "threshold", "limit", "relative_to", "verdict",
               "reason", "samples", "requests")  # fmt: skip
RULE_KEYS = ("rule", "description", "query", "verdict", "reason", "value", "limit", "samples", "judged",
             "requests", "baseline_requests", "longest_breach_s", "window_s", "relative_to", "breach_from",
             "breach_to")  # fmt: skip
STATEMENT_KEYS = ("rank", "query", "calls", "mean_ms", "total_ms", "rows")
RESULT_KEYS = ("median_ratio", "ci_low", "ci_high", "p_value", "drift", "reason", "method")
TOP_STATEMENTS = 10
TOP_KEYS = 20  # cache keys listed in the report (the record has them all)
TREND_WEEKS = 8
SCALING_DAYS = 7  # the hourly scaling DAG's changes shown in a run report


def _pick(data: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """Exactly ``keys`` (None where absent), so templates can test any of them on a partial record."""
    return {k: data.get(k) for k in keys} if isinstance(data, Mapping) else dict.fromkeys(keys)


def _arm_method(bench: Any) -> str | None:
    """How one benchmark arm was measured (the BenchResult's own description)."""
    return bench.get("method") if isinstance(bench, Mapping) and bench.get("queries") else None


def _comparison_method(comparison: Any) -> str | None:
    """How the per-query verdicts of a benchmark comparison were reached."""
    if not isinstance(comparison, Mapping):
        return None
    min_effect, alpha = comparison.get("min_effect"), comparison.get("alpha")
    rule = (
        f"; improved/regressed only when the whole CI of median(after)/median(before) lies beyond "
        f"±{min_effect:.0%} beyond the A/A drift, and p < {alpha:g}"
        if isinstance(min_effect, int | float) and isinstance(alpha, int | float)
        else ""
    )
    return f"{comparison.get('design', 'before_after')}: {comparison.get('method', '')}{rule}"


def _steps(
    declared: tuple[steps.Step, ...], data: Mapping[str, Any], record: Mapping[str, Any], group: str
) -> list[dict[str, Any]]:
    """Each declared step of a scope: whether it ran (the state Airflow gave its task, where the record
    has states; else whether it returned anything) and why not when it said."""
    skipped = data.get("skipped") if isinstance(data.get("skipped"), Mapping) else {}
    states = record.get("task_states") or {}
    rows = []
    for s in declared:
        if s.name not in data:
            continue
        state = states.get(f"{group}.{s.name}")
        ran = state == "success" if state else data.get(s.name) is not None
        rows.append({"step": s.name, "what": s.title, "ran": ran, "skipped": skipped.get(s.name), "state": state})
    return rows


def _target_view(record: Mapping[str, Any], name: str, data: dict[str, Any]) -> dict[str, Any]:
    r = facts.results(data)
    advise, judge, verify, backup = r["advise"], r["judge"], r["verify"], r["backup"]
    statements = [s for s in facts.statements(record) if s["target"] == name]
    texts = {q.get("name"): q.get("query") or (q.get("sql") or [""])[0] for q in (advise.queries if advise else ())}
    return {
        "name": name,
        "dialect": data.get("dialect", "?"),
        "conn_id": data.get("conn_id", "?"),
        "steps": _steps(steps.TARGET_STEPS, data, record, name),
        "statements": [_pick(s, STATEMENT_KEYS) for s in statements[:TOP_STATEMENTS]],
        "statements_total": len(statements),
        "workload_source": next((s.get("source") for s in statements if s.get("source")), None),
        "bench": [
            r | {"result": _pick(r["result"], RESULT_KEYS), "text": texts.get(r["query"]) or ""}
            for r in facts.bench_rows(record)
            if r["target"] == name
        ],
        "before_method": _arm_method(data.get("bench_before")),
        "after_method": _arm_method(data.get("bench_after")),
        "comparison_method": _comparison_method(judge.comparison if judge else None),
        "decision": judge.decision if judge else None,
        "indexes": [c for c in facts.index_changes(record) if c["target"] == name],
        "recommendations": [
            _pick(r, ("table", "columns", "method", "reason"))
            for r in facts.recommendations(record)
            if r["target"] == name
        ],
        "drop_candidates": [
            _pick(d, ("table", "index", "size_bytes", "reason"))
            for d in facts.drop_candidates(record)
            if d["target"] == name
        ],
        "preexisting": len(advise.preexisting) if advise else 0,
        "backup": _pick(backup.to_dict(), ("kind", "path", "verified", "detail")) if backup else None,
        "verify_method": verify.method if verify else None,
        "chart": f"latency-{name}",
        "resize": _resize_view(r.get("cloud_sql_resize")),
        "refused": [
            {"name": q.get("name"), "reason": q["refused"], "text": (q.get("sql") or [""])[0]}
            for q in (advise.queries if advise else ())
            if q.get("refused")
        ],
    }


def _resize_view(resize: Any) -> dict[str, Any] | None:
    """Cloud SQL downsizing: the decision, its steps, and the primary-vs-replica benchmark per query."""
    if resize is None:
        return None
    bench = resize.benchmark or {}
    comparison = bench.get("comparison") or {}
    arms = [{q.get("name"): q.get("summary") for q in (comparison.get(arm) or {}).get("queries") or ()}
            for arm in ("before", "after")]  # fmt: skip
    rows = [
        {"query": q.get("name"), "primary": arms[0].get(q.get("name")), "replica": arms[1].get(q.get("name")),
         "result": _pick(q.get("result"), RESULT_KEYS), "verdict": (q.get("result") or {}).get("verdict")}
        for q in comparison.get("queries") or ()
    ]  # fmt: skip
    return resize.to_dict() | {
        "rows": rows,
        "holds": bench.get("holds"),
        "bench_reason": bench.get("reason"),
        "method": _comparison_method(comparison),
        "arm_method": (comparison.get("before") or {}).get("method"),
    }


def _run_section(record: Mapping[str, Any], name: str, view: Callable[[Any], dict[str, Any]]) -> dict[str, Any] | None:
    """A run step's report section: None when the plan does not declare it, else its view, or why it is missing."""
    tasks = record.get("tasks") if isinstance(record.get("tasks"), Mapping) else {}
    if name not in tasks:
        return None
    result = steps.step("run", name).load(tasks.get(name))
    if result is None:
        skipped = tasks.get("skipped") if isinstance(tasks.get("skipped"), Mapping) else {}
        return {"missing": skipped.get(name) or "no result (failed, or not reached: NO-GO or an earlier failure)"}
    return view(result)


def _cache_view(result: Any) -> dict[str, Any]:
    data = result.to_dict()
    return data | {"keys": data["keys"][:TOP_KEYS], "keys_total": len(data["keys"])}


def _scaling_view(result: Any) -> dict[str, Any]:
    return result.to_dict() | {"hour": datetime.fromtimestamp(result.hour_start, UTC).isoformat(timespec="minutes")}


def _canaries(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every Cloud Run service's canary: revisions, each traffic step with its times, verdict and rule
    evidence, and the declared steps (a skipped one says why)."""
    views = {v["service"]: v for v in facts.canary_views(record)}
    decisions = {key: v["decision"] for key, v in views.items()}
    out = []
    for key, data in facts.canaries(record):
        if key not in views:
            continue
        view = views[key]
        revisions = {"canary": view["new_revision"], "baseline": view["old_revision"]}
        out.append(
            view
            | {
                "traffic_steps": [_traffic_step(s, revisions) for s in view["traffic_steps"]],
                "region_note": _region_note(key, view, decisions),
                "steps": _steps(steps.SERVICE_STEPS, data, record, data.get("group", "")),
            }
        )
    return out


def _traffic_step(step: Mapping[str, Any], revisions: Mapping[str, str | None]) -> dict[str, Any]:
    """One traffic step: its share and times, the analysis' verdict and counts, and its last check rule
    by rule (query, values, the seconds the samples and any breach cover, requests per revision)."""
    outcome = step.get("evidence") if isinstance(step.get("evidence"), Mapping) else {}
    check = outcome.get("evidence") if isinstance(outcome.get("evidence"), Mapping) else {}
    rules = [_rule_evidence(r, revisions) for r in check.get("results") or () if isinstance(r, Mapping)]
    started, ended = step.get("started_at"), step.get("ended_at")
    requests = {}
    for r in rules:  # one count per revision and window (rules on the same population repeat it)
        if r["requests"] is not None and r["revision"]:
            requests.setdefault((r["revision"], r["scope"], r["window_s"]), r["requests"])
    return {
        "number": step.get("number"),
        "percent": step.get("percent"),
        "started_at": started,
        "ended_at": ended,
        "duration_s": ended - started if isinstance(started, int | float) and isinstance(ended, int | float) else None,
        "decision": step.get("decision"),
        "reason": step.get("reason"),
        "checks": outcome.get("checks"),
        "failures": outcome.get("failures"),
        "inconclusives": outcome.get("inconclusives"),
        "checked_at": check.get("t"),
        "rules": rules,
        "requests": [
            {"revision": rev, "scope": scope, "window_s": window, "requests": n}
            for (rev, scope, window), n in requests.items()
        ],
    }


def _rule_evidence(result: Mapping[str, Any], revisions: Mapping[str, str | None]) -> dict[str, Any]:
    """A rule's result at a check: what it asked (query, population, window) and what it found."""
    row = _pick(result, RULE_KEYS)
    times = [p["t"] for p in result.get("points") or () if isinstance(p, Mapping) and "t" in p]
    scope = result.get("scope") or ""
    breach = (row["breach_from"], row["breach_to"])
    return row | {
        "scope": scope,
        "revision": revisions.get(scope),
        "baseline_revision": revisions.get(row["relative_to"] or ""),
        "first_sample": min(times) if times else None,
        "last_sample": max(times) if times else None,
        "sample_span_s": max(times) - min(times) if times else None,
        "breach_s": breach[1] - breach[0] if None not in breach else None,
    }


def _region_note(key: str, view: Mapping[str, Any], decisions: Mapping[str, str | None]) -> str | None:
    """Why a canary whose analysis passed was rolled back anyway (deploy.on_region_failure: rollback_all)."""
    if view["decision"] != "promote" or not view["rolled_back"] or view["on_region_failure"] != "rollback_all":
        return None
    others = [f"{k}: {d or 'no decision'}" for k, d in decisions.items() if k != key and d != "promote"]
    return "its analysis passed; rolled back with every region (deploy.on_region_failure: rollback_all) because " + (
        ", ".join(others) or "another region's canary did not pass"
    )


def _notes(record: Mapping[str, Any], gate: Gate | None, targets: list[dict[str, Any]]) -> list[str]:
    """What the reader must know to read the figures right (what did not run, and why it may not have)."""
    notes = []
    if failure := record.get("first_failure"):
        notes.append(f"First failure: {failure['task']}: {failure.get('error') or 'no message recorded'}")
    if facts.is_dry_run(record):
        notes.append("Dry run: nothing was changed; DDL shown is what would have run.")
    if gate is None:
        notes.append("The health check has no result (it did not run or failed): no GO/NO-GO figures.")
    elif gate.decision == "NO-GO":
        notes.append("NO-GO: the run stopped at the health gate; no database was changed.")
    for t in targets:
        said = [f"{s['what']} skipped: {s['skipped']}" for s in t["steps"] if s["skipped"]]
        missing = [s["what"] for s in t["steps"] if not s["ran"] and not s["skipped"]]
        if said:
            notes.append(f"{t['name']}: " + "; ".join(said) + ".")
        if missing and (gate is None or gate.decision != "NO-GO"):
            notes.append(f"{t['name']}: no result from {', '.join(missing)} (failed or not reached).")
        notes += [f"{t['name']}: not replayed (unsafe), {r['reason']}: {r['text'][:160]}" for r in t["refused"]]
    return notes


def run_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the run templates show, drawn from the record only."""
    gate = facts.gate(record)
    targets = [_target_view(record, name, data) for name, data in facts.targets(record)]
    return {
        "plan": record.get("plan", "?"),
        "dag_id": record.get("dag_id", "?"),
        "run_id": record.get("run_id", "?"),
        "started": record.get("started") or None,
        "outcome": facts.outcome(record),
        "dry_run": facts.is_dry_run(record),
        "params": {k: v for k, v in (record.get("params") or {}).items() if v not in (None, False)},
        "gate": gate.to_dict() if gate else None,
        "figures": [_pick(f, FIGURE_KEYS) for f in facts.gate_figures(record)],
        "targets": targets,
        "canaries": _canaries(record),
        "cache": _run_section(record, "warm_cache", _cache_view),
        "scaling": _run_section(record, "scaling_forecast", _scaling_view),
        "notes": _notes(record, gate, targets),
        "workload": facts.workload_latency(record),
        "trend_chart": "trend",
    }


def _charts(view: dict[str, Any], trend: list[dict[str, Any]] | None) -> dict[str, bytes]:
    charts: dict[str, bytes] = {}
    for t in view["targets"]:
        png = latency_chart(t["bench"], f"{view['plan']} / {t['name']}: latency before and after")
        if png:
            charts[t["chart"]] = png
    if trend:
        png = trend_chart({view["plan"]: trend}, f"{view['plan']}: workload latency per week")
        if png:
            charts[view["trend_chart"]] = png
    return charts


def _trend(record: Mapping[str, Any], history: Any) -> list[dict[str, Any]] | None:
    return history.trend(record["plan"], TREND_WEEKS) if history is not None and record.get("plan") else None


def _scaling_applied(view: Mapping[str, Any], history: Any) -> list[dict[str, Any]]:
    """What the hourly ``dbopt_scaling`` DAG set over the last ``SCALING_DAYS`` days on the services this
    run deploys or forecasts (the history's scaling records), newest last."""
    services = {(c["name"], c["region"]) for c in view["canaries"]}
    if view["scaling"] and "services" in view["scaling"]:
        services |= {(r["service"], r["region"]) for r in view["scaling"]["services"]}
    if history is None or not services:
        return []
    actions = history.scaling_actions(datetime.now(UTC) - timedelta(days=SCALING_DAYS))
    return scaling_rows([a for a in actions if (a["service"], a["region"]) in services], UTC)


def _view_and_charts(record: Mapping[str, Any], history: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    view = run_view(record) | {"scaling_days": SCALING_DAYS}
    view["scaling_applied"] = _scaling_applied(view, history)
    return view, _charts(view, _trend(record, history))


def _html(view: dict[str, Any], charts: dict[str, bytes], src: Callable[[str, bytes], str]) -> str:
    return render("run_report.html.j2", run=view, images={name: src(name, png) for name, png in charts.items()})


def write_run_report(record: Mapping[str, Any], run_dir: Path | str, history: Any = None) -> dict[str, Any]:
    """Write ``report.html`` (charts embedded as data: URIs, so the file stands alone), ``report.md``
    and the chart PNGs into ``run_dir``. ``history``: a ``HistoryStore`` for the weekly trend chart.
    Returns ``{"html": path, "markdown": path, "charts": [paths]}``."""
    out = Path(run_dir)
    view, charts = _view_and_charts(record, history)
    chart_dir = out / "charts"
    chart_dir.mkdir(parents=True, exist_ok=True)
    chart_paths = []
    for name, png in charts.items():
        path = chart_dir / f"{name}.png"
        path.write_bytes(png)
        chart_paths.append(str(path))
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(_html(view, charts, lambda _, png: data_uri(png)), encoding="utf-8")
    md_path.write_text(
        render("run_report.md.j2", run=view, charts={n: f"charts/{n}.png" for n in charts}), encoding="utf-8"
    )
    return {"html": str(html_path), "markdown": str(md_path), "charts": chart_paths}


def run_email(record: Mapping[str, Any], history: Any = None) -> HtmlEmail:
    """The same report as an e-mail: charts as inline ``cid:`` parts."""
    view, charts = _view_and_charts(record, history)
    html = _html(view, charts, lambda name, _: f"cid:{content_id(name)}")
    subject = f"[dbopt] {view['plan']} {view['run_id']}: {view['outcome'].upper()}"
    return HtmlEmail(subject, html, {content_id(n): png for n, png in charts.items()})
